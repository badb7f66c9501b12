// Two-step sign-in in Debian's Chromium, from the SPA example: a person signed in with a password
// presses the app's "Confirm with your second factor" (RFC 9470 step-up: `acr_values`), sets up an
// authenticator app on Keyward's page, keeps the recovery codes, and comes back with `acr` mfa;
// then every sign-in asks for a code (computed here by npm `otpauth`, an implementation
// independent of Keyward's, at the test's clock), and a recovery code works once. Run by
// tests/e2e.rs, which owns Keyward and its clock. Every page on the way is checked with axe-core.
import { strict as assert } from 'node:assert';
import * as OTPAuth from 'otpauth';
import { Accessibility, launch } from './browser.mjs';
import { closeHarness, harness } from './harness.mjs';

const { KEYWARD, SPA, START_MS } = process.env;
const PASSWORD = 'correct horse battery';

const step = (what) => process.stderr.write(`second factor: ${what}\n`);

const { context, close } = await launch();
context.setDefaultTimeout(120_000);
// The browser's clock is the test's too: ID tokens are checked against it.
let nowMs = Number(START_MS);
await context.clock.setFixedTime(nowMs);
/** Moves every clock to the next 30-second step, so the app shows a new code. */
async function nextStep() {
  ({ now_ms: nowMs } = await harness('advance', { seconds: 30 }));
  await context.clock.setFixedTime(nowMs);
}
const a11y = new Accessibility();
const status = (page) => page.locator('#status');
const assurance = (page) => page.locator('#assurance');

async function signInWithPassword(page) {
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(`${KEYWARD}/signin`);
  await page.getByLabel('Username').fill('grace');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The app's sign-out: its refresh token revoked, Keyward's session ended, back to the app. */
async function signOut(page) {
  const back = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await back;
  await page.waitForURL(`${SPA}/`);
  await status(page).getByText('Signed out').waitFor();
}

try {
  const page = await context.newPage();
  await page.goto(SPA);
  await status(page).getByText('Signed out').waitFor();

  step('sign in with a password alone');
  await signInWithPassword(page);
  await page.waitForURL(`${SPA}/`);
  await status(page).getByText('Signed in as grace').waitFor();
  await assurance(page).getByText('with your password only').waitFor();

  step('the app asks for a second factor: set up an authenticator app');
  await page.getByRole('button', { name: 'Confirm with your second factor' }).click();
  await page.waitForURL(`${KEYWARD}/signin/second-factor`);
  await page.getByRole('heading', { name: 'Set up an authenticator app' }).waitFor();
  await page.getByRole('img', { name: 'QR code to scan with your authenticator app' }).waitFor();
  await a11y.check(page, 'set up an authenticator app');
  const secret = (await page.locator('#secret').textContent()).replaceAll(' ', '');
  const totp = new OTPAuth.TOTP({
    secret: OTPAuth.Secret.fromBase32(secret),
    algorithm: 'SHA1',
    digits: 6,
    period: 30,
  });
  const code = () => totp.generate({ timestamp: nowMs });
  await page.getByLabel('Code from the app').fill('000000');
  await page.getByRole('button', { name: 'Turn on two-step sign-in' }).click();
  await page.getByRole('alert').getByText('That code is not right').waitFor();
  await a11y.check(page, 'set up with a wrong code');
  await page.getByLabel('Code from the app').fill(code());
  await page.getByRole('button', { name: 'Turn on two-step sign-in' }).click();
  await page.getByRole('heading', { name: 'Save your recovery codes' }).waitFor();
  await a11y.check(page, 'recovery codes');
  const recovery = await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').allTextContents();
  assert.equal(recovery.length, 10);
  await page.getByRole('link', { name: 'I saved them: continue' }).click();
  await page.waitForURL(`${SPA}/`);
  await assurance(page).getByText('with a second factor').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Confirm with your second factor' }).isVisible(), false);

  step('every sign-in now asks for a code');
  await signOut(page);
  await nextStep();
  await signInWithPassword(page);
  await page.waitForURL(`${KEYWARD}/signin/second-factor`);
  await a11y.check(page, 'second step');
  await page.getByLabel('Code from your authenticator app').fill('123456');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('alert').getByText('That code is not right').waitFor();
  await a11y.check(page, 'second step with a wrong code');
  await page.getByLabel('Code from your authenticator app').fill(code());
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL(`${SPA}/`);
  await assurance(page).getByText('with a second factor').waitFor();

  step('a recovery code instead, once');
  await signOut(page);
  await signInWithPassword(page);
  await page.waitForURL(`${KEYWARD}/signin/second-factor`);
  await page.getByText('Lost your phone? Use a recovery code').click();
  await a11y.check(page, 'second step, recovery code open');
  await page.getByLabel('Recovery code').fill(recovery[0]);
  await page.getByRole('button', { name: 'Use recovery code' }).click();
  await page.waitForURL(`${SPA}/`);
  await assurance(page).getByText('with a second factor').waitFor();
  await signOut(page);
  await signInWithPassword(page);
  await page.waitForURL(`${KEYWARD}/signin/second-factor`);
  await page.getByText('Lost your phone? Use a recovery code').click();
  await page.getByLabel('Recovery code').fill(recovery[0]);
  await page.getByRole('button', { name: 'Use recovery code' }).click();
  await page.getByRole('alert').getByText('already used').waitFor();

  assert.deepEqual(a11y.violations, [], `accessibility:\n${a11y.violations.join('\n')}`);
  await harness('done');
} finally {
  await close();
  closeHarness();
}
