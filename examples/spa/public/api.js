// The one way this app calls notes-api: every request carries the current access token, and a
// 401 triggers one shared refresh and one retry (see auth.js), never one refresh per request.
import { config, withAccessToken } from './auth.js';

/** `fetch` against notes-api with the user's access token. */
export function api(path, init = {}) {
  const url = new URL(path, config.api);
  return withAccessToken((token) => {
    const headers = new Headers(init.headers);
    headers.set('Authorization', `Bearer ${token}`);
    return fetch(url, { ...init, headers });
  });
}

/** The user's notes. */
export async function listNotes() {
  const response = await api('/notes');
  if (!response.ok) throw new Error(`notes-api answered ${response.status}`);
  return response.json();
}

/** Adds a note. */
export async function addNote(text) {
  const response = await api('/notes', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  if (!response.ok) throw new Error(`notes-api answered ${response.status}`);
  return response.json();
}
