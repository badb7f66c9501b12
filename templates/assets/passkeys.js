// Passkeys on Keyward's pages (WebAuthn). A form marked `data-passkey` gets its options (from its
// `data-options` attribute, or by POSTing its fields to `data-options-url`), asks the browser to
// make or use a passkey, puts the browser's answer (its standard JSON) in the form's `credential`
// field and sends the form as usual: the server answers with a page, as for any form. The sign-in
// form also offers passkeys in the username field's autofill (conditional mediation).
'use strict';

(function () {
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
    // Too old a browser: the passkey buttons stay hidden, everything else works.
    return;
  }

  function say(form, message) {
    const out = form.querySelector('[data-passkey-status]');
    if (out) out.textContent = message;
  }

  async function optionsOf(form) {
    if (form.dataset.options) return JSON.parse(form.dataset.options);
    const response = await fetch(form.dataset.optionsUrl, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      credentials: 'same-origin',
    });
    if (!response.ok) throw new Error(`options: ${response.status}`);
    return response.json();
  }

  async function ceremony(form, mediation, signal) {
    const options = await optionsOf(form);
    const credential =
      form.dataset.passkey === 'create'
        ? await navigator.credentials.create({
            publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey),
          })
        : await navigator.credentials.get({
            publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey),
            ...(mediation ? { mediation } : {}),
            ...(signal ? { signal } : {}),
          });
    form.elements.credential.value = JSON.stringify(credential.toJSON());
    form.submit();
  }

  let conditional = null;
  for (const form of document.querySelectorAll('form[data-passkey]')) {
    form.hidden = false;
    form.addEventListener('submit', (event) => {
      if (form.elements.credential.value) return;
      event.preventDefault();
      if (conditional) conditional.abort();
      say(form, '');
      ceremony(form).catch((e) => {
        if (e.name === 'AbortError') return;
        say(form, e.name === 'NotAllowedError'
          ? 'No passkey was used. Try again, or sign in another way.'
          : 'Your browser could not use a passkey here.');
      });
    });
    if (form.dataset.conditional !== undefined) {
      PublicKeyCredential.isConditionalMediationAvailable?.().then((available) => {
        if (!available) return;
        conditional = new AbortController();
        ceremony(form, 'conditional', conditional.signal).catch(() => {});
      });
    }
  }
})();
