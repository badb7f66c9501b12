// The example SPA and notes-api in one process, each on a free port: the SPA first, then the API
// allowing the SPA's origin. Prints one JSON line `{"spa": ..., "api": ...}` once both listen.
import { once } from 'node:events';

const listening = async (server) => {
  if (!server.listening) await once(server, 'listening');
  return server.address().port;
};

process.env.PORT = '0';
const spa = await import('../../examples/spa/server.js');
const spaOrigin = `http://localhost:${await listening(spa.server)}`;

process.env.NOTES_ALLOWED_ORIGINS = spaOrigin;
const api = await import('../../examples/notes-api/server.js');
const apiUrl = `http://127.0.0.1:${await listening(api.server)}`;
// The SPA reads this per request, so setting it now is in time for its first page.
process.env.NOTES_API = apiUrl;

console.log(JSON.stringify({ spa: spaOrigin, api: apiUrl }));
