// An Express app on passport-openidconnect (0.1.2, the most used Passport strategy for OpenID
// Connect), which sends no PKCE, signing alice in through Keyward in Debian's Chromium. Its
// client is registered `--pkce optional` and the strategy sends a nonce (`nonce: true`): it signs
// in. The same library against a client that requires PKCE gets `invalid_request`, as every
// request without a challenge does. The Rust test (tests/e2e.rs) registers the clients when asked.
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { strict as assert } from 'node:assert';
import express from 'express';
import session from 'express-session';
import passport from 'passport';
import OpenIDConnectStrategy from 'passport-openidconnect';
import { Accessibility, launch } from './browser.mjs';
import { closeHarness, harness } from './harness.mjs';

const { KEYWARD, ALICE_SUB } = process.env;
const PASSWORD = 'correct horse battery';

const step = (what) => process.stderr.write(`passport: ${what}\n`);

// The tutorial's app: sessions, Passport, a login route and a callback.
const app = express();
app.use(session({ secret: randomBytes(32).toString('hex'), resave: false, saveUninitialized: false }));
app.use(passport.initialize());
app.use(passport.session());
passport.serializeUser((user, done) => done(null, user));
passport.deserializeUser((user, done) => done(null, user));
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const base = `http://127.0.0.1:${server.address().port}`;

/** A strategy named `name` for a client the harness registers with `pkce` (required|optional). */
async function strategy(name, pkce) {
  const { client_id: clientID, client_secret: clientSecret } = await harness('register', {
    redirect_uri: `${base}/${name}/callback`,
    pkce,
  });
  passport.use(
    name,
    new OpenIDConnectStrategy(
      {
        issuer: KEYWARD,
        authorizationURL: `${KEYWARD}/authorize`,
        tokenURL: `${KEYWARD}/token`,
        userInfoURL: `${KEYWARD}/userinfo`,
        clientID,
        clientSecret,
        callbackURL: `${base}/${name}/callback`,
        scope: ['profile'],
        nonce: true,
      },
      (issuer, profile, done) => done(null, { sub: profile.id, username: profile.username }),
    ),
  );
  app.get(`/${name}/login`, passport.authenticate(name));
  app.get(`/${name}/callback`, passport.authenticate(name), (req, res) => res.redirect('/'));
}
await strategy('lenient', 'optional');
await strategy('strict', 'required');
app.get('/', (req, res) => res.send(req.user ? `signed in as ${req.user.username} (${req.user.sub})` : 'signed out'));
// Express 5 hands the strategy's errors here: Keyward's refusal, as passport reports it.
app.use((err, req, res, next) => res.status(502).send(`refused: ${err.code ?? err.message}`));

const { context, close } = await launch();
context.setDefaultTimeout(120_000);
const a11y = new Accessibility();
try {
  const page = await context.newPage();
  const authorizeRequests = [];
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.origin === KEYWARD && url.pathname === '/authorize') authorizeRequests.push(url);
  });

  step('a client that requires PKCE refuses the library outright');
  await page.goto(`${base}/strict/login`);
  await page.getByText('refused: invalid_request').waitFor();

  step('the lenient client: Keyward sign-in, then back to the app');
  await page.goto(`${base}/lenient/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill(PASSWORD);
  await a11y.check(page, 'sign-in from the Passport app');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(`${base}/`);
  assert.equal(await page.locator('body').innerText(), `signed in as alice (${ALICE_SUB})`);

  for (const request of authorizeRequests) {
    assert.equal(request.searchParams.get('code_challenge'), null, 'the library sends no PKCE');
    assert.ok(request.searchParams.get('nonce'), 'it sends a nonce');
  }
  assert.equal(authorizeRequests.length, 2);
  assert.deepEqual(a11y.violations, [], a11y.violations.join('\n'));
  await harness('done');
} finally {
  await close();
  // Chromium's keep-alive connections would hold the server (and this process) open.
  server.closeAllConnections();
  server.close();
  closeHarness();
}
