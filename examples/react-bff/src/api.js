// The app's one HTTP client, as the tutorials build it: an axios instance whose response
// interceptor sends the person to sign in on a 401. Unlike the tutorials', it has nothing to
// refresh: the browser holds no token, only the BFF's HTTP-only session cookie, and the BFF
// refreshes (once for all concurrent calls) before it ever answers 401.
import axios from 'axios';

export const api = axios.create({ headers: { Accept: 'application/json' } });

let csrfToken = '';
/** The session's CSRF token (from /bff/session), sent with every change the app makes. */
export function setCsrfToken(token) {
  csrfToken = token ?? '';
}

api.interceptors.request.use((config) => {
  if (config.method !== 'get' && csrfToken) config.headers['X-CSRF-Token'] = csrfToken;
  return config;
});

api.interceptors.response.use(
  (response) => response,
  (error) => {
    if (error.response?.status === 401) {
      // The session ended (signed out elsewhere, expired): sign in again, then come back here.
      window.location.assign('/bff/login');
      return new Promise(() => {}); // the page is going away; callers never see this failure
    }
    return Promise.reject(error);
  },
);

/** Who is signed in: `{ signedIn, user, csrf }`. */
export const currentSession = async () => (await api.get('/bff/session')).data;
export const listNotes = async () => (await api.get('/api/notes')).data;
export const addNote = async (text) => (await api.post('/api/notes', { text })).data;
