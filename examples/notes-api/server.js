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

export const server = app.listen(PORT, '127.0.0.1', () => {
  console.log(`notes-api listening on http://127.0.0.1:${server.address().port}`);
});
