// The sign-in page's proof of work (src/rate_limits/proof.rs): while the person's network is over
// the sign-in limit, find a counter such that SHA-256(challenge ":" counter) starts with BITS
// zero bits, and hold the form until it is found. Served from Keyward's own origin (the CSP allows
// no inline script); Web Crypto computes the hashes, so nothing here is hand-written cryptography.
'use strict';

(() => {
  const form = document.querySelector('form[data-proof]');
  if (!form) return;
  const challenge = form.dataset.proof;
  const bits = Number(challenge.split('.')[0]);
  const field = form.elements.proof;
  const status = document.getElementById('proof-status');
  const button = form.querySelector('button[type="submit"]');
  const encoder = new TextEncoder();
  // Hashes in flight at once: Web Crypto answers each with a promise, and a batch keeps the
  // page from paying a turn of the event loop per hash.
  const BATCH = 256;

  function zeroBits(hash) {
    const bytes = new Uint8Array(hash);
    let zeros = 0;
    for (const byte of bytes) {
      if (byte === 0) {
        zeros += 8;
        continue;
      }
      zeros += Math.clz32(byte) - 24;
      break;
    }
    return zeros;
  }

  async function solve() {
    for (let start = 0; ; start += BATCH) {
      const batch = [];
      for (let n = start; n < start + BATCH; n += 1) {
        batch.push(crypto.subtle.digest('SHA-256', encoder.encode(`${challenge}:${n}`)));
      }
      const hashes = await Promise.all(batch);
      const found = hashes.findIndex((h) => zeroBits(h) >= bits);
      if (found >= 0) return start + found;
    }
  }

  let waiting = false;
  const started = performance.now();
  status.textContent = 'Your browser is solving a short puzzle…';
  const solved = (window.crypto && crypto.subtle ? solve() : Promise.reject(new Error('no Web Crypto')))
    .then((counter) => {
      field.value = String(counter);
      form.dataset.proofMs = String(Math.round(performance.now() - started));
      if (waiting) {
        status.textContent = 'Done. Signing in…';
        form.submit();
      } else {
        status.textContent = 'Your browser is ready to sign in.';
      }
    })
    .catch(() => {
      status.textContent = 'This browser cannot solve the puzzle. Try again later or use another browser.';
    });

  form.addEventListener('submit', (event) => {
    if (field.value) return;
    // Sent only once the proof is ready; the person sees why it waits.
    event.preventDefault();
    waiting = true;
    button.disabled = true;
    status.textContent = 'Solving a short puzzle before signing in…';
    return solved;
  });
})();
