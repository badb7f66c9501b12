// notes-api and the React example's backend-for-frontend in one process: the API on a free port,
// then the BFF on BFF_PORT (its client is registered for that port) calling it. Prints one JSON
// line `{"bff": ..., "api": ...}` once both listen.
//
// The race the BFF must win, made certain: when the test writes a number N to E2E_GATE_FILE, the
// next refresh request to Keyward is held until N calls to /api are open at the BFF at once, so
// every one of them arrives while that refresh is under way. Only single flight then makes one
// refresh of them; without it, each presents the same refresh token.
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';

const gateFile = process.env.E2E_GATE_FILE;
let openApiCalls = 0;
const waiters = new Set(); // () => void, called whenever openApiCalls grows
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init) => {
  let wanted = null;
  try {
    if (String(init?.body ?? '').includes('grant_type=refresh_token')) wanted = Number(readFileSync(gateFile, 'utf8'));
  } catch {
    // no gate armed
  }
  if (wanted) {
    rmSync(gateFile);
    await new Promise((release) => {
      const check = () => openApiCalls >= wanted && (waiters.delete(check), release());
      waiters.add(check);
      check();
    });
  }
  return realFetch(url, init);
};

const listening = async (server) => {
  if (!server.listening) await once(server, 'listening');
  return server.address().port;
};

process.env.PORT = '0';
const api = await import('../../examples/notes-api/server.js');
const apiUrl = `http://127.0.0.1:${await listening(api.server)}`;

process.env.NOTES_API = apiUrl;
process.env.PORT = process.env.BFF_PORT;
const bff = await import('../../examples/react-bff/server.js');
const bffUrl = `http://localhost:${await listening(bff.server)}`;
bff.server.on('request', (req, res) => {
  if (!req.url.startsWith('/api/')) return;
  openApiCalls += 1;
  res.on('close', () => {
    openApiCalls -= 1;
  });
  for (const check of [...waiters]) check();
});

console.log(JSON.stringify({ bff: bffUrl, api: apiUrl }));
