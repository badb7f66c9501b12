// Serves the example single-page app: its own files and the two libraries it imports, from
// node_modules, so nothing loads from a CDN. A static file server is all an SPA needs; this one
// is written on node:http to keep the example free of anything but the OAuth libraries.
//
//   KEYWARD_ISSUER=http://127.0.0.1:8080 NOTES_API=http://127.0.0.1:4000 npm start
//
// Open http://localhost:3000 (PORT=0 picks a free port; the first line printed names the URL).
// Register the app with `keyward clients create --public --redirect-uri http://localhost:3000/callback
// --post-logout-redirect-uri http://localhost:3000/ ...` (see README.md).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
// Read per request: a harness may start this server before it knows where the API listens.
const settings = () => {
  const issuer = process.env.KEYWARD_ISSUER ?? 'http://127.0.0.1:8080';
  const api = process.env.NOTES_API ?? 'http://127.0.0.1:4000';
  return {
    issuer,
    clientId: process.env.SPA_CLIENT_ID ?? 'notes-spa',
    api,
    // The API's identifier, asked for with `resource` (RFC 8707) so tokens name it in `aud`.
    audience: process.env.NOTES_AUDIENCE ?? api,
    // offline_access: Keyward issues a refresh token only when it is asked for (OIDC Core §11).
    scope: 'openid profile offline_access notes:read notes:write',
  };
};

// URL prefix -> directory. Anything else is not served.
const roots = [
  ['/vendor/oauth4webapi/', join(here, 'node_modules/oauth4webapi/build')],
  ['/vendor/jose/', join(here, 'node_modules/jose/dist/webapi')],
  ['/', join(here, 'public')],
];
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

// Tokens live in this page's memory, so what may run in it matters: only our own scripts, and
// only connections to Keyward and the API.
const csp = ({ issuer, api }) =>
  [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    `connect-src 'self' ${new URL(issuer).origin} ${new URL(api).origin}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');

function fileFor(pathname) {
  // The app's routes are one page: the callback is handled by the same script.
  if (pathname === '/' || pathname === '/callback') return join(here, 'public/index.html');
  for (const [prefix, dir] of roots) {
    if (!pathname.startsWith(prefix)) continue;
    const path = normalize(join(dir, decodeURIComponent(pathname.slice(prefix.length))));
    return path.startsWith(dir + sep) ? path : null;
  }
  return null;
}

export const server = createServer(async (req, res) => {
  const config = settings();
  res.setHeader('Content-Security-Policy', csp(config));
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    return;
  }
  const { pathname } = new URL(req.url, 'http://spa');
  if (pathname === '/config.json') {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(JSON.stringify(config));
    return;
  }
  let path;
  try {
    path = fileFor(pathname);
  } catch {
    path = null; // a malformed %-escape
  }
  const type = path && types[extname(path)];
  const body = type && (await readFile(path).catch(() => null));
  if (!body) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    return;
  }
  res.writeHead(200, { 'Content-Type': `${type}; charset=utf-8`, 'Cache-Control': 'no-cache' });
  res.end(req.method === 'HEAD' ? undefined : body);
});

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`spa listening on http://localhost:${server.address().port}`);
});
