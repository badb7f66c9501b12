// The tutorials' Express /notes API, with Keyward as its identity provider: access tokens are
// verified locally against Keyward's JWKS (no shared secret, no call to Keyward per request).
//
//   KEYWARD_ISSUER=http://127.0.0.1:8080 NOTES_AUDIENCE=http://127.0.0.1:4000 npm start
//
// NOTES_AUDIENCE is this API's identifier: register clients with `--audience` set to it, and have
// them ask for it with `resource`. PORT=0 picks a free port; the first line printed names it.
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const ISSUER = process.env.KEYWARD_ISSUER ?? 'http://127.0.0.1:8080';
const AUDIENCE = process.env.NOTES_AUDIENCE ?? 'http://127.0.0.1:4000';
const PORT = Number(process.env.PORT ?? 4000);
// Browser apps allowed to call this API (CORS), comma-separated exact origins.
const ALLOWED_ORIGINS = (process.env.NOTES_ALLOWED_ORIGINS ?? '').split(',').filter(Boolean);

// Where the keys are: from discovery, as any relying party should find them.
const discovery = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
// Cached; refetched on an unknown `kid`, at most once per cooldown (a flood of tokens with random
// kids must not become a flood of JWKS requests), and at least every cacheMaxAge.
const JWKS = createRemoteJWKSet(new URL(discovery.jwks_uri), {
  cooldownDuration: 30_000,
  cacheMaxAge: 10 * 60_000,
});

/** An RFC 6750 §3 challenge: the status, and why, in `WWW-Authenticate`. */
function challenge(res, status, error, description, scope) {
  let value = 'Bearer realm="notes"';
  if (error) value += `, error="${error}", error_description="${description}"`;
  if (scope) value += `, scope="${scope}"`;
  res.set('WWW-Authenticate', value);
  return res.status(status).json(error ? { error, error_description: description } : {});
}

/** Replaces the tutorial's `authMiddleware`: a valid Keyward access token with `scope`. */
function requireToken(scope) {
  return async (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const [scheme, token] = header.split(' ');
    if (!token || scheme.toLowerCase() !== 'bearer') return challenge(res, 401);
    try {
      const { payload } = await jwtVerify(token, JWKS, {
        issuer: ISSUER,
        audience: AUDIENCE,
        typ: 'at+jwt', // an ID token (typ JWT) is not an access token
        algorithms: ['RS256'],
        clockTolerance: 30,
        requiredClaims: ['exp', 'iat', 'sub', 'client_id', 'scope'],
      });
      const scopes = String(payload.scope).split(' ');
      if (!scopes.includes(scope)) {
        return challenge(res, 403, 'insufficient_scope', `needs ${scope}`, scope);
      }
      req.auth = { sub: payload.sub, clientId: payload.client_id, roles: payload.roles ?? [] };
      return next();
    } catch {
      return challenge(res, 401, 'invalid_token', 'the access token is invalid or expired');
    }
  };
}

/** Coarse authorisation by the `roles` claim (`keyward users set-roles USER --role admin`). */
function requireRole(role) {
  return (req, res, next) =>
    req.auth.roles.includes(role)
      ? next()
      : res.status(403).json({ error: 'forbidden', error_description: `needs the ${role} role` });
}

const notes = new Map(); // sub -> [{ id, text }]

const app = express();
app.use(express.json({ limit: '16kb' }));
app.use((req, res, next) => {
  const origin = req.get('origin');
  if (origin && ALLOWED_ORIGINS.includes(origin)) {
    res.set('Access-Control-Allow-Origin', origin);
    res.set('Access-Control-Expose-Headers', 'WWW-Authenticate');
    res.vary('Origin');
  }
  if (req.method === 'OPTIONS' && origin && ALLOWED_ORIGINS.includes(origin)) {
    res.set('Access-Control-Allow-Methods', 'GET, POST');
    res.set('Access-Control-Allow-Headers', 'Authorization, Content-Type');
    res.set('Access-Control-Max-Age', '600');
    return res.sendStatus(204);
  }
  return next();
});

app.get('/notes', requireToken('notes:read'), (req, res) => {
  res.json(notes.get(req.auth.sub) ?? []);
});

app.post('/notes', requireToken('notes:write'), (req, res) => {
  const text = typeof req.body?.text === 'string' ? req.body.text.slice(0, 1000) : '';
  if (!text) return res.status(400).json({ error: 'invalid_request', error_description: 'text is required' });
  const mine = notes.get(req.auth.sub) ?? [];
  const note = { id: mine.length + 1, text };
  notes.set(req.auth.sub, [...mine, note]);
  return res.status(201).json(note);
});

app.get('/admin/notes', requireToken('notes:read'), requireRole('admin'), (req, res) => {
  res.json(Object.fromEntries(notes));
});

// This app's admins manage people in Keyward from here, through its management API: the backend
// holds a management client (`keyward clients create --grant client_credentials --scope
// "admin:users.read admin:users.write"`); no browser ever sees its token.
const ADMIN_CLIENT_ID = process.env.KEYWARD_ADMIN_CLIENT_ID;
const ADMIN_CLIENT_SECRET = process.env.KEYWARD_ADMIN_CLIENT_SECRET;
let managementToken = null; // { value, expiresAt }
let fetchingToken = null; // one token request at a time, however many admins click at once

/** A management access token, cached until shortly before it expires. */
async function managementAccessToken() {
  if (managementToken && managementToken.expiresAt - 30_000 > Date.now()) return managementToken.value;
  fetchingToken ??= (async () => {
    const credentials = Buffer.from(
      `${encodeURIComponent(ADMIN_CLIENT_ID)}:${encodeURIComponent(ADMIN_CLIENT_SECRET)}`,
    ).toString('base64');
    const res = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { authorization: `Basic ${credentials}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'admin:users.read admin:users.write' }),
    });
    if (!res.ok) throw new Error(`the token endpoint answered ${res.status}`);
    const body = await res.json();
    managementToken = { value: body.access_token, expiresAt: Date.now() + body.expires_in * 1000 };
    return managementToken.value;
  })().finally(() => {
    fetchingToken = null;
  });
  return fetchingToken;
}

/** A call to Keyward's management API; a token refused (revoked, rotated secret) is fetched anew once. */
async function keyward(path, init = {}) {
  const call = async () =>
    fetch(`${ISSUER}/admin/v1${path}`, {
      ...init,
      headers: { ...init.headers, authorization: `Bearer ${await managementAccessToken()}` },
    });
  const res = await call();
  if (res.status !== 401) return res;
  managementToken = null;
  return call();
}

// Sets a person's roles (the `roles` claim of their next tokens), found by the `sub` this app
// knows them by; read-then-change under If-Match, so two admins at once cannot undo each other.
app.put('/admin/users/:sub/roles', requireToken('notes:write'), requireRole('admin'), async (req, res) => {
  if (!ADMIN_CLIENT_ID) {
    return res.status(501).json({ error: 'not_configured', error_description: 'no management client' });
  }
  const roles = req.body?.roles;
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) {
    return res.status(400).json({ error: 'invalid_request', error_description: 'roles: an array of strings' });
  }
  const found = await keyward(`/users?sub=${encodeURIComponent(req.params.sub)}`);
  if (found.status === 400) return res.status(404).json({ error: 'not_found' });
  if (!found.ok) return res.status(502).json({ error: 'upstream', error_description: `keyward: ${found.status}` });
  const [user] = (await found.json()).users;
  if (!user) return res.status(404).json({ error: 'not_found' });
  const current = await keyward(`/users/${user.id}`);
  const changed = await keyward(`/users/${user.id}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', 'if-match': current.headers.get('etag') },
    body: JSON.stringify({ roles }),
  });
  if (changed.status === 412) {
    return res.status(409).json({ error: 'conflict', error_description: 'changed meanwhile; try again' });
  }
  if (changed.status === 422) {
    const problem = await changed.json();
    return res.status(400).json({ error: 'invalid_request', error_description: problem.detail });
  }
  if (!changed.ok) return res.status(502).json({ error: 'upstream', error_description: `keyward: ${changed.status}` });
  const body = await changed.json();
  return res.json({ sub: body.sub, roles: body.roles });
});

export const server = app.listen(PORT, '127.0.0.1', () => {
  console.log(`notes-api listening on http://127.0.0.1:${server.address().port}`);
});
