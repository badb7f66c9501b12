// A crowd behind one address, in Debian's Chromium: someone at the same address has sprayed wrong
// passwords past the sign-in limit (tests/e2e.rs did, before starting this script), and a person
// on a browser never used there still signs in. The page solves its proof of work
// (/assets/proof.js) while the person types, or holds the form until it has; a wrong password is
// still refused. Prints how long each proof took, for the record.
import { strict as assert } from 'node:assert';
import { Accessibility, launch } from './browser.mjs';

const { KEYWARD, USERNAME, PASSWORD } = process.env;
const step = (what) => process.stderr.write(`crowd: ${what}\n`);

const { context, close } = await launch();
// An upper bound so a broken page fails instead of hanging; the proofs take well under it.
context.setDefaultTimeout(120_000);
const a11y = new Accessibility();
const proofMs = [];
try {
  const page = await context.newPage();
  await page.goto(`${KEYWARD}/signin`);
  step('the page asks for a proof');
  const form = page.locator('form[data-proof]');
  await form.waitFor();
  await a11y.check(page, 'sign-in asking for a proof');

  step('a wrong password, sent before the proof is ready');
  const firstChallenge = await form.getAttribute('data-proof');
  await page.getByLabel('Username').fill(USERNAME);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText('Wrong username or password.').waitFor();
  const secondChallenge = await page.locator('form[data-proof]').getAttribute('data-proof');
  assert.notEqual(secondChallenge, firstChallenge, 'each attempt gets a new challenge');
  await a11y.check(page, 'sign-in with an error, asking for a proof');

  step('the right password, once the page is ready');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('status').getByText('Your browser is ready to sign in.').waitFor();
  proofMs.push(Number(await page.locator('form[data-proof]').getAttribute('data-proof-ms')));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${KEYWARD}/account`);
  await page.getByText(USERNAME).first().waitFor();

  assert.deepEqual(a11y.violations, [], `accessibility:\n${a11y.violations.join('\n')}`);
  process.stdout.write(`${JSON.stringify({ proof_ms: proofMs })}\n`);
} finally {
  await close();
}
