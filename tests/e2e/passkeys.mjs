// Passkeys in Debian's Chromium with its virtual authenticator (the DevTools WebAuthn domain,
// through playwright-core's CDP session): register one from the account page, prove it as the
// second step after a password, sign in with it alone from the sign-in page, see a replayed
// answer refused, rename and remove it. Keyward's issuer is `localhost` (WebAuthn needs a domain
// name). Run by tests/e2e.rs. Every page on the way is checked with axe-core.
import { strict as assert } from 'node:assert';
import { Accessibility, launch } from './browser.mjs';

const { KEYWARD } = process.env;
const PASSWORD = 'correct horse battery';
const step = (what) => process.stderr.write(`passkeys: ${what}\n`);

const { context, close } = await launch();
context.setDefaultTimeout(60_000);
const a11y = new Accessibility();
try {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      // Off except around the clicks that mean "use my passkey": with it on, the sign-in page's
      // autofill request (conditional mediation) would be answered as soon as the page loads, as
      // if the person had picked the passkey from the username field.
      automaticPresenceSimulation: false,
    },
  });
  /** Runs `action` with the authenticator answering at once (the person touching it). */
  async function touching(action) {
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: true });
    try {
      await action();
    } finally {
      await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled: false });
    }
  }
  const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;

  async function signInWithPassword() {
    await page.goto(`${KEYWARD}/signin`);
    await page.getByLabel('Username').fill('grace');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  }
  async function signOut() {
    await page.goto(`${KEYWARD}/account`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${KEYWARD}/signin*`);
  }

  step('sign in with the password, add a passkey');
  await signInWithPassword();
  await page.waitForURL(`${KEYWARD}/account`);
  await page.getByRole('link', { name: 'Manage your passkeys' }).click();
  await page.waitForURL(`${KEYWARD}/account/passkeys`);
  await a11y.check(page, 'passkeys, none yet');
  await page.getByLabel('Name it (where it lives)').fill('Laptop');
  await touching(async () => {
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    // The first factor: ten recovery codes, shown once.
    await page.getByRole('heading', { name: 'Save your recovery codes' }).waitFor();
  });
  await page.getByRole('link', { name: 'I saved them: continue' }).click();
  await page.waitForURL(`${KEYWARD}/account/passkeys?changed=added`);
  await page.getByRole('list', { name: 'Passkeys' }).getByText('Laptop', { exact: true }).waitFor();
  await a11y.check(page, 'passkeys, one');
  const made = await credentials();
  assert.equal(made.length, 1);
  assert.equal(made[0].isResidentCredential, true, 'a discoverable credential');

  step('the password now needs the passkey as the second step');
  await signOut();
  let answer = null;
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url() === `${KEYWARD}/signin/second-factor/passkey`) answer = r.postData();
  });
  await signInWithPassword();
  await page.waitForURL(`${KEYWARD}/signin/second-factor`);
  await a11y.check(page, 'second step with a passkey');
  await touching(async () => {
    await page.getByRole('button', { name: 'Use your passkey' }).click();
    await page.waitForURL(`${KEYWARD}/account`);
  });
  await page.getByText('with a passkey').or(page.getByText('with your password and a second step')).waitFor();
  assert.ok(answer, 'the answer was sent');

  step('the same answer again is refused');
  await signOut();
  await signInWithPassword();
  await page.waitForURL(`${KEYWARD}/signin/second-factor`);
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  const replay = new URLSearchParams(answer);
  replay.set('csrf', csrf);
  const replayed = await page.request.post(`${KEYWARD}/signin/second-factor/passkey`, {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    data: replay.toString(),
    maxRedirects: 0,
  });
  assert.equal(replayed.status(), 401, 'a replayed passkey answer is refused');
  assert.match(await replayed.text(), /expired|could not be checked/);
  await page.goto(`${KEYWARD}/account`);
  assert.equal(new URL(page.url()).pathname, '/signin', 'still not signed in');

  step('sign in with the passkey alone');
  await page.goto(`${KEYWARD}/signin`);
  await a11y.check(page, 'sign-in with passkeys offered');
  await touching(async () => {
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.waitForURL(`${KEYWARD}/account`);
  });
  await page.getByText('with a passkey').waitFor();

  step('or from the username field\'s autofill (conditional mediation), without a click');
  await signOut();
  // Leave the sign-in page sign-out ended on: its own autofill request must not be the one
  // answered (its challenge's cookie is replaced by the next page's).
  await page.goto('about:blank');
  await touching(async () => {
    // The person picks the passkey the username field offers: the page's pending request
    // answers. The authenticator answers from before the page loads, so whenever the page's
    // script starts its request (a busy machine makes that late), it is answered.
    await page.goto(`${KEYWARD}/signin`, { waitUntil: 'commit' });
    await page.waitForURL(`${KEYWARD}/account`);
  });
  await page.getByText('with a passkey').waitFor();

  step('rename and remove it');
  await page.goto(`${KEYWARD}/account/passkeys`);
  await page.getByLabel('New name for Laptop').fill('Work laptop');
  await page.getByRole('button', { name: 'Rename' }).click();
  await page.waitForURL(`${KEYWARD}/account/passkeys?changed=renamed`);
  await page.getByRole('button', { name: 'Remove Work laptop' }).click();
  await page.waitForURL(`${KEYWARD}/account/passkeys?changed=removed`);
  await page.getByText('You have no passkey yet.').waitFor();
  await a11y.check(page, 'passkeys, removed');
  await signOut();
  await signInWithPassword();
  await page.waitForURL(`${KEYWARD}/account`);

  assert.deepEqual(a11y.violations, [], `accessibility:\n${a11y.violations.join('\n')}`);
  process.stdout.write('ok\n');
} finally {
  await close();
}
