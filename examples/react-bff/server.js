// The backend-for-frontend: an Express server that signs people in with Keyward (openid-client,
// code + PKCE, a confidential client), keeps their tokens in its session store, and calls
// notes-api for the React app, which holds nothing but an HTTP-only `__Host-` session cookie.
//
//   KEYWARD_ISSUER=http://127.0.0.1:8080 BFF_CLIENT_ID=notes-bff BFF_CLIENT_SECRET=... \
//   NOTES_API=http://127.0.0.1:4000 npm start
//
// Open http://localhost:3000 (BFF_URL: where browsers reach this server; PORT: where it listens).
// Register it with `keyward clients create --id notes-bff --redirect-uri http://localhost:3000/bff/callback
// --post-logout-redirect-uri http://localhost:3000/ ...` (see README.md).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express from 'express';
import session from 'express-session';
import * as oidc from 'openid-client';

const env = process.env;
const ISSUER = env.KEYWARD_ISSUER ?? 'http://127.0.0.1:8080';
const PORT = Number(env.PORT ?? 3000);
const BFF_URL = new URL(env.BFF_URL ?? `http://localhost:${PORT}`).origin;
const NOTES_API = env.NOTES_API ?? 'http://127.0.0.1:4000';
// notes-api's identifier, asked for with `resource` (RFC 8707) so the access token names it in `aud`.
const AUDIENCE = env.NOTES_AUDIENCE ?? NOTES_API;
// offline_access: Keyward issues a refresh token only when it is asked for (OIDC Core §11).
const SCOPE = 'openid profile offline_access notes:read notes:write';
const CLIENT_ID = env.BFF_CLIENT_ID ?? 'notes-bff';
const CLIENT_SECRET = env.BFF_CLIENT_SECRET;
if (!CLIENT_SECRET) throw new Error('BFF_CLIENT_SECRET is required: the secret `keyward clients create` printed');
const COOKIE = '__Host-notes-bff';
const DIST = fileURLToPath(new URL('./dist/', import.meta.url));
if (!existsSync(DIST)) throw new Error('no dist/: run `npm run build` first (make test does)');

// `__Host-` cookies must be Secure (RFC 6265bis §4.1.3.2). Browsers accept Secure cookies from
// https origins and from http://localhost, a "potentially trustworthy" origin (W3C Secure
// Contexts §3.1); nothing else can hold this session.
const { protocol, hostname } = new URL(BFF_URL);
const localhost = protocol === 'http:' && hostname === 'localhost';
if (protocol !== 'https:' && !localhost) {
  throw new Error(`BFF_URL ${BFF_URL}: use https (or http://localhost while developing)`);
}

// Keyward's endpoints from discovery. Plain http is allowed only for a loopback Keyward.
const insecure = new URL(ISSUER).protocol === 'http:';
const keyward = await oidc.discovery(
  new URL(ISSUER),
  CLIENT_ID,
  undefined,
  oidc.ClientSecretBasic(CLIENT_SECRET),
  insecure ? { execute: [oidc.allowInsecureRequests] } : undefined,
);

const app = express();
app.disable('x-powered-by');
// Behind a TLS-terminating proxy, trust its X-Forwarded-Proto (TRUST_PROXY, Express's syntax).
if (env.TRUST_PROXY) app.set('trust proxy', env.TRUST_PROXY);
if (localhost) {
  // express-session sets a Secure cookie only on a request it believes is HTTPS; see above.
  app.use((req, res, next) => {
    Object.defineProperty(req, 'secure', { value: true });
    next();
  });
}
app.use(
  session({
    name: COOKIE,
    // Sessions signed with a key of this process end when it restarts, unless one is configured.
    secret: env.BFF_SESSION_SECRET ?? randomBytes(32).toString('hex'),
    resave: false,
    saveUninitialized: false,
    // Lax, not Strict: the session must come back on Keyward's redirect to /bff/callback, a
    // top-level GET from another site; cross-site POSTs never carry it.
    cookie: { httpOnly: true, secure: true, sameSite: 'lax', path: '/', maxAge: 12 * 3600_000 },
  }),
);
app.use((req, res, next) => {
  res.set('X-Content-Type-Options', 'nosniff');
  // Not no-referrer: under it, browsers send `Origin: null` with form POSTs (Fetch §3.2.5), and
  // the CSRF check needs this origin on the sign-out form. Other sites get no Referer.
  res.set('Referrer-Policy', 'same-origin');
  res.set(
    'Content-Security-Policy',
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
      "base-uri 'none'; form-action 'self' " +
      new URL(ISSUER).origin +
      "; frame-ancestors 'none'",
  );
  next();
});

const promised = (fn) => new Promise((ok, fail) => fn((err, value) => (err ? fail(err) : ok(value))));
const save = (req) => promised((done) => req.session.save(done));

/** The session's tokens from a token response (a refresh may omit the ID token: keep the last). */
function tokenSet(response, previous = {}) {
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token ?? previous.refreshToken,
    idToken: response.id_token ?? previous.idToken,
    expiresAt: Date.now() + (response.expiresIn() ?? 0) * 1000,
  };
}

// Sign-in: code + PKCE S256, `state` and `nonce`, kept in the session until the callback.
app.get('/bff/login', async (req, res) => {
  const verifier = oidc.randomPKCECodeVerifier();
  const signIn = { verifier, state: oidc.randomState(), nonce: oidc.randomNonce() };
  req.session.signIn = signIn;
  const url = oidc.buildAuthorizationUrl(keyward, {
    redirect_uri: `${BFF_URL}/bff/callback`,
    scope: SCOPE,
    resource: AUDIENCE,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: signIn.state,
    nonce: signIn.nonce,
  });
  await save(req);
  res.redirect(303, url.href);
});

app.get('/bff/callback', async (req, res) => {
  const signIn = req.session.signIn;
  if (!signIn) return res.redirect(303, '/');
  let tokens;
  try {
    // Checks `state`, `iss` (RFC 9207), the ID token's signature, `aud`, `nonce` and times.
    tokens = await oidc.authorizationCodeGrant(keyward, new URL(req.originalUrl, BFF_URL), {
      pkceCodeVerifier: signIn.verifier,
      expectedState: signIn.state,
      expectedNonce: signIn.nonce,
      idTokenExpected: true,
    });
  } catch (e) {
    delete req.session.signIn;
    await save(req);
    // Declined consent, a stale link, a bad state: back to the app, signed out, with why.
    return res.redirect(303, `/?error=${encodeURIComponent(e.error ?? e.code ?? 'sign_in_failed')}`);
  }
  const { sub } = tokens.claims();
  const profile = await oidc.fetchUserInfo(keyward, tokens.access_token, sub);
  // A new session id at sign-in: a cookie planted before it is worth nothing after (fixation).
  await promised((done) => req.session.regenerate(done));
  req.session.tokens = tokenSet(tokens);
  req.session.user = { sub, name: profile.preferred_username ?? sub };
  req.session.csrf = randomBytes(32).toString('base64url');
  await save(req);
  return res.redirect(303, '/');
});

/** Who is signed in, and the CSRF token the app sends back on every change. No OAuth token. */
app.get('/bff/session', (req, res) => {
  res.set('Cache-Control', 'no-store');
  const { user, csrf } = req.session;
  res.json(user ? { signedIn: true, user, csrf } : { signedIn: false });
});

/**
 * CSRF protection on every state-changing route: the request comes from this origin (Origin,
 * sent by browsers on every POST) and carries the session's CSRF token, as the `X-CSRF-Token`
 * header or a `csrf` form field (draft-ietf-oauth-browser-based-apps §6.1.3.2: the SameSite
 * cookie alone leaves same-site attackers and older browsers).
 */
function csrfProtected(req, res, next) {
  const sent = req.get('x-csrf-token') ?? req.body?.csrf ?? '';
  const expected = req.session.csrf ?? '';
  const origin = req.get('origin');
  const same =
    sent.length > 0 && sent.length === expected.length && timingSafeEqual(Buffer.from(sent), Buffer.from(expected));
  if (origin !== BFF_URL || !same) {
    return res.status(403).json({ error: 'forbidden', error_description: 'cross-site request refused' });
  }
  return next();
}

// Concurrent requests of one session share one refresh: Keyward rotates the refresh token on
// every use and revokes the family when a used one comes back (RFC 9700 §4.14.2), so two
// refreshes with the same token would sign the person out.
const refreshing = new Map(); // session id -> promise of its tokens after one refresh

/** Tokens newer than `stale` (an access token): refreshed once per session, or null if ended. */
function freshTokens(req, stale) {
  const sid = req.sessionID;
  let flight = refreshing.get(sid);
  if (!flight) {
    flight = (async () => {
      // From the store, not this request's copy: another request may have refreshed already.
      const stored = await promised((done) => req.sessionStore.get(sid, done));
      const current = stored?.tokens;
      if (!current || current.accessToken !== stale) return current ?? null;
      let response;
      try {
        response = await oidc.refreshTokenGrant(keyward, current.refreshToken);
      } catch (e) {
        // The family was revoked or expired (invalid_grant): this session is over.
        if (e.error !== 'invalid_grant') throw e;
        await promised((done) => req.sessionStore.destroy(sid, done));
        return null;
      }
      stored.tokens = tokenSet(response, current);
      await promised((done) => req.sessionStore.set(sid, stored, done));
      return stored.tokens;
    })().finally(() => refreshing.delete(sid));
    refreshing.set(sid, flight);
  }
  return flight;
}

/** Calls notes-api with the session's access token: refreshed first if expired, and once on a 401. */
async function notesApi(req, method, path, body) {
  const call = (tokens) =>
    fetch(`${NOTES_API}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${tokens.accessToken}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
  let tokens = req.session.tokens;
  if (!tokens) return null;
  if (tokens.expiresAt <= Date.now()) tokens = await freshTokens(req, tokens.accessToken);
  if (!tokens) return null;
  let response = await call(tokens);
  if (response.status === 401) {
    tokens = await freshTokens(req, tokens.accessToken);
    if (!tokens) return null;
    response = await call(tokens);
  }
  return response;
}

/** Answers with notes-api's answer, or 401 when the session has ended (the app signs in again). */
async function relay(req, res, method, path, body) {
  const response = await notesApi(req, method, path, body);
  if (!response) {
    req.session.destroy(() => {});
    return res.status(401).json({ error: 'signed_out', error_description: 'sign in again' });
  }
  res.status(response.status).set({ 'content-type': 'application/json', 'cache-control': 'no-store' });
  return res.send(await response.text());
}

app.get('/api/notes', (req, res) => relay(req, res, 'GET', '/notes'));
app.post('/api/notes', express.json({ limit: '16kb' }), csrfProtected, (req, res) =>
  relay(req, res, 'POST', '/notes', { text: req.body?.text }),
);

// Sign-out ends all three: the refresh token (revoked, RFC 7009, which ends its family and its
// access tokens), this session, and Keyward's (RP-Initiated Logout, with the ID token as hint).
// A form POST, so the browser follows the redirect and no script ever reads the ID token in it.
app.post('/bff/logout', express.urlencoded({ extended: false, limit: '1kb' }), csrfProtected, async (req, res) => {
  const { tokens } = req.session;
  try {
    await oidc.tokenRevocation(keyward, tokens.refreshToken, { token_type_hint: 'refresh_token' });
  } catch {
    // Still end both sessions: the family dies with its idle timeout at worst.
  }
  await promised((done) => req.session.destroy(done));
  res.clearCookie(COOKIE, { path: '/', httpOnly: true, secure: true, sameSite: 'lax' });
  const end = oidc.buildEndSessionUrl(keyward, {
    id_token_hint: tokens.idToken,
    post_logout_redirect_uri: `${BFF_URL}/`,
  });
  res.redirect(303, end.href);
});

// The React app: the built files, and index.html for every other GET (its routes are one page).
app.use(express.static(DIST, { index: false, maxAge: '1h', setHeaders: noStoreHtml }));
app.get('/{*path}', (req, res) => res.set('Cache-Control', 'no-cache').sendFile('index.html', { root: DIST }));

function noStoreHtml(res, path) {
  if (path.endsWith('.html')) res.set('Cache-Control', 'no-cache');
}

export const server = app.listen(PORT, '127.0.0.1', () => {
  console.log(`react-bff listening on ${BFF_URL} (port ${server.address().port})`);
});
