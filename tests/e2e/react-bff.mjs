// The React app and its Express backend-for-frontend (examples/react-bff) against Keyward and
// notes-api in Debian's Chromium. Run by tests/e2e.rs, which owns Keyward, its database and the
// clock the BFF and notes-api read; this script asks it to move the clock, count rotations and
// revoked families, and sign a person out everywhere. Every page on the way is checked with axe.
// Throughout, the page's JavaScript must never see a token: no cookie it can read, nothing in its
// storage, nothing in any response it can read.
import { strict as assert } from 'node:assert';
import { Accessibility, launch } from './browser.mjs';
import { closeHarness, harness } from './harness.mjs';

const { KEYWARD, BFF, START_MS } = process.env;
const PASSWORD = 'correct horse battery';
// A Keyward access or ID token (a JWS), or a refresh token.
const TOKEN = /eyJ[\w-]+\.[\w-]+\.|kwr[ft]_/;

const { context, close } = await launch();
// The browser's clock is the test's too: Keyward's pages and the BFF read the same time.
await context.clock.setFixedTime(Number(START_MS));
const a11y = new Accessibility();
const step = (what) => process.stderr.write(`react-bff: ${what}\n`);
const rotations = async () => (await harness('rotations')).count;
const revokedFamilies = async () => (await harness('families')).revoked;

/** Moves every clock past the access tokens' expiry (TTL + notes-api's leeway). */
async function expireAccessTokens() {
  const { now_ms: now } = await harness('advance', { seconds: 60 + 30 + 1 });
  await context.clock.setFixedTime(now);
}

// Everything the BFF's pages can read: the bodies of its documents and of its fetch/XHR calls.
const readable = [];
// Keyward's end-session requests, which carry the ID token as a hint: proof the check can fail.
const endSessionUrls = [];
const reading = [];
context.on('response', (response) => {
  const { url, resourceType } = { url: response.url(), resourceType: response.request().resourceType() };
  if (!url.startsWith(BFF) || !['document', 'fetch', 'xhr'].includes(resourceType)) return;
  if (response.status() >= 300 && response.status() < 400) return; // followed by the browser, not read
  reading.push(response.text().then((body) => readable.push({ url, body }), () => {}));
});
context.on('request', (request) => {
  if (request.url().startsWith(`${KEYWARD}/logout`)) endSessionUrls.push(request.url());
});

/** No token where this page's JavaScript could find one. */
async function assertNoTokenVisible(page, where) {
  await Promise.all(reading);
  const seen = await page.evaluate(() => ({
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
    html: document.documentElement.outerHTML,
    referrer: document.referrer,
  }));
  assert.equal(seen.cookie, '', `${where}: document.cookie is empty`);
  assert.equal(seen.local + seen.session, 0, `${where}: nothing in storage`);
  assert.doesNotMatch(seen.html + seen.referrer, TOKEN, `${where}: no token in the page`);
  for (const { url, body } of readable) assert.doesNotMatch(body, TOKEN, `${where}: no token in ${url}`);
}

const status = (page) => page.locator('#status');

/** Signs in on Keyward's page (the person is on it). */
async function signInOnKeyward(page) {
  await page.waitForURL(`${KEYWARD}/signin`);
  await page.getByLabel('Username').fill('grace');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

try {
  const page = await context.newPage();
  await page.goto(BFF);
  await status(page).getByText('Signed out').waitFor();
  await a11y.check(page, 'react-bff signed out');

  step('sign in, consent');
  await page.getByRole('link', { name: 'Sign in' }).click();
  await signInOnKeyward(page);
  await page.waitForURL(`${KEYWARD}/consent*`);
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL(`${BFF}/`);
  await status(page).getByText('Signed in as grace').waitFor();
  await a11y.check(page, 'react-bff signed in');

  step('the one cookie');
  const cookies = await context.cookies(BFF);
  assert.equal(cookies.length, 1, JSON.stringify(cookies));
  const [cookie] = cookies;
  assert.equal(cookie.name, '__Host-notes-bff');
  assert.deepEqual([cookie.httpOnly, cookie.secure, cookie.sameSite, cookie.path], [true, true, 'Lax', '/']);
  await assertNoTokenVisible(page, 'signed in');

  step('notes through the BFF and notes-api');
  await page.getByLabel('New note').fill('buy milk');
  await page.getByRole('button', { name: 'Add' }).click();
  await page.locator('#notes li', { hasText: 'buy milk' }).waitFor();

  step('CSRF: changes need the token and this origin');
  const { csrf } = await page.evaluate(async () => (await fetch('/bff/session')).json());
  const withoutToken = await page.evaluate(async () => {
    const r = await fetch('/api/notes', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'forged' }),
    });
    return r.status;
  });
  assert.equal(withoutToken, 403, 'a POST without the CSRF token is refused');
  const post = (headers) =>
    context.request.post(`${BFF}/api/notes`, { headers: { 'x-csrf-token': csrf, ...headers }, data: { text: 'forged' } });
  assert.equal((await post({ origin: 'https://evil.example' })).status(), 403, 'another origin is refused');
  assert.equal((await post({ origin: BFF, 'x-csrf-token': `${csrf.slice(1)}x` })).status(), 403, 'a wrong token is refused');
  assert.equal((await post({ origin: BFF })).status(), 201, 'the same request with both is accepted');
  const logoutForged = await context.request.post(`${BFF}/bff/logout`, {
    headers: { origin: 'https://evil.example' },
    form: { csrf },
    maxRedirects: 0,
  });
  assert.equal(logoutForged.status(), 403, 'a cross-site sign-out is refused');

  step('five calls after expiry: one refresh');
  await expireAccessTokens();
  const before = await rotations();
  await harness('gate', { calls: 5 });
  // no-store: Chromium's HTTP cache would otherwise queue identical GETs behind the first.
  const statuses = await page.evaluate(() =>
    Promise.all(Array.from({ length: 5 }, () => fetch('/api/notes', { cache: 'no-store' }).then((r) => r.status))),
  );
  assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
  assert.equal(await rotations(), before + 1, 'one rotation for five concurrent calls');
  await page.getByRole('button', { name: 'Reload notes' }).click();
  await page.locator('#notes li', { hasText: 'forged' }).waitFor();
  assert.equal(await rotations(), before + 1, 'the new access token serves later calls');

  step('reload keeps the session');
  await page.reload();
  await status(page).getByText('Signed in as grace').waitFor();
  await page.locator('#notes li', { hasText: 'buy milk' }).waitFor();
  await assertNoTokenVisible(page, 'after a reload');

  step('signed out everywhere: the next call sends the person to sign in');
  await harness('sign_out_everywhere', { username: 'grace' });
  await expireAccessTokens();
  await page.getByRole('button', { name: 'Reload notes' }).click();
  // The BFF's refresh is refused (the family is revoked): 401, and the interceptor signs in.
  await signInOnKeyward(page);
  await page.waitForURL(`${BFF}/`);
  await status(page).getByText('Signed in as grace').waitFor();

  step('sign out ends all three');
  const [oldCookie] = await context.cookies(BFF);
  const revoked = await revokedFamilies();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${BFF}/`);
  await status(page).getByText('Signed out').waitFor();
  await a11y.check(page, 'react-bff after sign-out');
  assert.equal(await revokedFamilies(), revoked + 1, 'the refresh token was revoked');
  assert.deepEqual(await context.cookies(BFF), [], 'the cookie is gone');
  const replay = await fetch(`${BFF}/bff/session`, { headers: { cookie: `${oldCookie.name}=${oldCookie.value}` } });
  assert.deepEqual(await replay.json(), { signedIn: false }, 'the old session cookie is worth nothing');
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.waitForURL(`${KEYWARD}/signin`); // Keyward's session ended too: a password again
  await a11y.check(page, 'keyward sign-in after sign-out');

  // The detector finds a real Keyward token: the ID token hint the browser carried to Keyward.
  assert.equal(endSessionUrls.length, 1);
  assert.match(endSessionUrls[0], TOKEN);
  await page.goto(BFF);
  await status(page).getByText('Signed out').waitFor();
  await assertNoTokenVisible(page, 'signed out');
  assert(readable.length > 10, `responses were read (${readable.length})`);

  assert.deepEqual(a11y.violations, [], a11y.violations.join('\n'));
  await harness('done');
} catch (e) {
  // Where the browser was, so a failure names the page.
  for (const p of context.pages()) step(`failed on ${p.url()}: ${(await p.textContent('body').catch(() => '')).slice(0, 500)}`);
  throw e;
} finally {
  await close();
  closeHarness();
}
