// The SPA example against Keyward and notes-api in Debian's Chromium, driven by Playwright. Run by
// the Rust test tests/e2e.rs, which owns Keyward, its database and its clock: this script asks it
// (one JSON line on stdout, one answer on stdin) to move the clock or to count refresh rotations.
// Every page on the way is checked with axe-core, light and dark.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { Accessibility, launch } from './browser.mjs';
import { closeHarness, harness } from './harness.mjs';

const { KEYWARD, SPA, UNREGISTERED, START_MS, SCREENSHOTS } = process.env;
const PASSWORD = 'correct horse battery';


const { context, close } = await launch();
// The browser's clock is the test's too: ID tokens are checked against it.
await context.clock.setFixedTime(Number(START_MS));

/** Moves every clock (Keyward's, notes-api's, the browser's) past the access tokens' expiry. */
async function expireAccessTokens() {
  const { now_ms: now } = await harness('advance', { seconds: 60 + 30 + 1 }); // TTL + API leeway
  await context.clock.setFixedTime(now);
}

const a11y = new Accessibility();
const checkA11y = (page, name) => a11y.check(page, name);

async function screenshot(page, file) {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, file) });
}

const status = (page) => page.locator('#status');
/** `count` concurrent calls to notes-api through the app's one wrapper, in `page`. */
const burst = (page, count) =>
  page.evaluate(async (n) => {
    const { listNotes } = await import('/api.js');
    const all = await Promise.all(Array.from({ length: n }, () => listNotes()));
    return all.map((notes) => notes.length);
  }, count);
/** Says where the script is, so a failure names its step. */
const step = (what) => process.stderr.write(`e2e: ${what}\n`);
const rotations = async () => (await harness('rotations')).count;

try {
  const tab = context.pages()[0] ?? (await context.newPage());
  await tab.goto(SPA);
  await status(tab).getByText('Signed out').waitFor();
  await checkA11y(tab, 'spa signed out');

  step('sign up');
  // Sign up on Keyward's pages, on the way from the app's "Sign in" button.
  await tab.getByRole('button', { name: 'Sign in' }).click();
  await tab.waitForURL(`${KEYWARD}/signin`);
  await checkA11y(tab, 'sign-in');
  await screenshot(tab, 'signin.png');
  await tab.getByRole('link', { name: 'Create an account' }).click();
  await tab.waitForURL(`${KEYWARD}/signup`);
  await checkA11y(tab, 'sign-up');
  await tab.getByLabel('Username').fill('grace');
  await tab.getByLabel('Password', { exact: true }).fill('short');
  await tab.getByLabel('Repeat password').fill('short');
  await tab.getByRole('button', { name: 'Create account' }).click();
  await tab.getByRole('alert').waitFor();
  await checkA11y(tab, 'sign-up with an error');
  await tab.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await tab.getByLabel('Repeat password').fill(PASSWORD);
  await tab.getByRole('button', { name: 'Create account' }).click();
  await tab.waitForURL(`${KEYWARD}/consent*`);
  await checkA11y(tab, 'consent');
  await screenshot(tab, 'consent.png');
  await tab.getByRole('button', { name: 'Allow' }).click();

  step('back in the app');
  // Back in the app: code exchange, ID token verified with the JWKS, userinfo, all cross-origin.
  await tab.waitForURL(`${SPA}/`);
  await status(tab).getByText('Signed in as grace').waitFor();
  await checkA11y(tab, 'spa signed in');
  await tab.getByLabel('New note').fill('buy milk');
  await tab.getByRole('button', { name: 'Add' }).click();
  await tab.locator('#notes li', { hasText: 'buy milk' }).waitFor();

  step('five calls, one refresh');
  // Expired: five calls at once get five 401s and share one refresh.
  await expireAccessTokens();
  let before = await rotations();
  assert.deepEqual(await burst(tab, 5), [1, 1, 1, 1, 1]);
  assert.equal(await rotations(), before + 1, 'one refresh for five concurrent 401s');

  step('two tabs');
  // A second tab learns the session from the first; both refresh at once, one rotation, and the
  // family lives on.
  const second = await context.newPage();
  await second.goto(SPA);
  await status(second).getByText('Signed in as grace').waitFor();
  // "Signed in" shows as soon as the tab learns the session; a call waits for whatever the tabs
  // still have in flight (a token the new tab asked the leader for), which must finish before
  // the clock moves, or it would be issued after the move and the burst below would need none.
  assert.deepEqual(await burst(second, 1), [1]);
  await expireAccessTokens();
  before = await rotations();
  const [a, b] = await Promise.all([burst(tab, 3), burst(second, 3)]);
  assert.deepEqual([...a, ...b], [1, 1, 1, 1, 1, 1]);
  assert.equal(await rotations(), before + 1, 'one refresh for both tabs');
  step('the follower alone');
  // The follower alone: it asks the leader.
  await expireAccessTokens();
  assert.deepEqual(await burst(second, 2), [1, 1]);
  assert.equal(await rotations(), before + 2);
  step('the leader closes');
  // The leader closes; the other tab takes over with the latest refresh token.
  await tab.close();
  await expireAccessTokens();
  assert.deepEqual(await burst(second, 2), [1, 1]);
  assert.equal(await rotations(), before + 3);
  assert.deepEqual(await harness('families'), { revoked: 0 }, 'the one family lives');

  step('a reload stays signed in');
  // The only tab reloads: it leads again with the token set it kept in its sessionStorage, and
  // never goes to Keyward for it; its refresh token is the current one (the family lives).
  let authorizations = 0;
  const countAuthorizations = (request) => {
    if (request.url().startsWith(`${KEYWARD}/authorize`)) authorizations += 1;
  };
  context.on('request', countAuthorizations);
  await second.reload();
  await status(second).getByText('Signed in as grace').waitFor();
  await expireAccessTokens();
  assert.deepEqual(await burst(second, 2), [1, 1]);
  assert.equal(await rotations(), before + 4);
  assert.equal(authorizations, 0, 'no round trip to Keyward');
  context.off('request', countAuthorizations);
  assert.deepEqual(await harness('families'), { revoked: 0 }, 'the one family lives');

  step('Keyward pages');
  // Keyward's own pages for a signed-in person.
  const pages = await context.newPage();
  await pages.goto(`${KEYWARD}/account`);
  await checkA11y(pages, 'account');
  await pages.goto(`${KEYWARD}/logout`);
  await pages.getByRole('button', { name: 'Sign out' }).waitFor();
  await checkA11y(pages, 'logout confirmation');
  await pages.goto(`${KEYWARD}/signout`);
  await pages.getByRole('button', { name: 'Sign out' }).waitFor();
  await checkA11y(pages, 'sign-out confirmation');
  await pages.goto(`${KEYWARD}/authorize?client_id=nobody`);
  await checkA11y(pages, 'error page');
  await pages.close();

  step('unregistered origin');
  // From an origin no client registered, /token cannot be read; from the app's it can.
  const tokenCall = (page) =>
    page.evaluate(async (issuer) => {
      try {
        const r = await fetch(`${issuer}/token`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
          body: 'grant_type=refresh_token&refresh_token=nope&client_id=notes-spa',
        });
        return `read ${r.status}`;
      } catch (e) {
        return `blocked ${e.name}`;
      }
    }, KEYWARD);
  const stranger = await context.newPage();
  await stranger.goto(UNREGISTERED);
  assert.equal(await tokenCall(stranger), 'blocked TypeError');
  await stranger.close();
  assert.equal(await tokenCall(second), 'read 400');

  step('sign out');
  // Sign out: the refresh token is revoked, Keyward's session ends, the app is signed out.
  const { refreshToken } = await second.evaluate(async () => {
    const { currentSession } = await import('/auth.js');
    return currentSession();
  });
  // The page leaves for Keyward's end_session_endpoint and comes back, signed out.
  const back = second.waitForEvent('framenavigated', { predicate: (f) => f === second.mainFrame() });
  await second.getByRole('button', { name: 'Sign out' }).click();
  await back;
  await second.waitForLoadState();
  assert.equal(second.url(), `${SPA}/`);
  await status(second).getByText('Signed out').waitFor();
  assert.deepEqual(await harness('families'), { revoked: 1 }, 'the one family is revoked');
  // Signed out stays signed out across a reload: nothing was kept.
  assert.equal(await second.evaluate(() => sessionStorage.length), 0);
  await second.reload();
  await status(second).getByText('Signed out').waitFor();
  const dead = await fetch(`${KEYWARD}/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'notes-spa' }),
  });
  assert.equal(dead.status, 400);
  assert.equal((await dead.json()).error, 'invalid_grant');
  await second.goto(`${KEYWARD}/account`);
  await second.waitForURL(`${KEYWARD}/signin*`);
  await second.getByLabel('Username').fill('grace');
  await second.getByLabel('Password').fill('not the password');
  await second.getByRole('button', { name: 'Sign in' }).click();
  await second.getByRole('alert').waitFor();
  await checkA11y(second, 'sign-in with an error');

  assert.deepEqual(a11y.violations, [], `accessibility:\n${a11y.violations.join('\n')}`);
  await harness('done');
} finally {
  closeHarness(); // or stdin keeps the process alive
  await close();
}
