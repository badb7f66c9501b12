// The page: what it shows signed in and signed out. All protocol work is in auth.js and api.js.
import {
  ACR_MFA, completeSignIn, currentSession, onSessionChange, signIn, signOut, userInfo, SignedOut,
} from './auth.js';
import { addNote, listNotes } from './api.js';

const $ = (id) => document.getElementById(id);

function showError(e) {
  $('error').textContent = e instanceof SignedOut ? '' : `Something went wrong: ${e.message}`;
}

async function renderNotes() {
  const notes = await listNotes();
  $('notes').replaceChildren(
    ...notes.map((n) => Object.assign(document.createElement('li'), { textContent: n.text })),
  );
}

let shownFor = null;
onSessionChange(async (session) => {
  $('signed-in').hidden = !session;
  $('signed-out').hidden = Boolean(session);
  if (!session) {
    shownFor = null;
    $('status').textContent = 'Signed out';
    $('notes').replaceChildren();
    return;
  }
  // How they signed in, from the verified ID token (`acr`; `amr` lists the methods).
  const strong = session.claims.acr === ACR_MFA;
  $('assurance').textContent = strong
    ? 'Signed in with a second factor.'
    : 'Signed in with your password only.';
  $('step-up').hidden = strong;
  // A refresh changes the tokens, not the person: load their profile once per sign-in.
  if (shownFor === session.claims.sub) return;
  shownFor = session.claims.sub;
  try {
    const me = await userInfo();
    $('status').textContent = `Signed in as ${me.preferred_username ?? me.sub}`;
    await renderNotes();
  } catch (e) {
    showError(e);
  }
});

$('sign-in').addEventListener('click', () => signIn().catch(showError));
// Step-up (RFC 9470): ask Keyward for a second factor before something sensitive.
$('step-up').addEventListener('click', () => signIn({ acrValues: ACR_MFA }).catch(showError));
$('sign-out').addEventListener('click', () => signOut().catch(showError));
$('reload').addEventListener('click', () => renderNotes().catch(showError));
$('add-note').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('note-text');
  try {
    await addNote(input.value);
    input.value = '';
    await renderNotes();
  } catch (e) {
    showError(e);
  }
});

if (location.pathname === '/callback') {
  await completeSignIn().catch(showError);
}
if (!(await currentSession())) $('status').textContent = 'Signed out';
