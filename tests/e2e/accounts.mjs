// People running their own accounts, in Debian's Chromium: sign up, confirm the address with the
// code from the mail (opened through the mail's link), sign out, forget the password, reset it
// with the mailed code, sign in with the new one, and change the email address. Mail goes to a real SMTP server run by the
// Rust test (tests/e2e.rs); this script asks it for a mail (one JSON line on stdout, one answer
// on stdin). Every page on the way is checked with axe-core, light and dark.
import { strict as assert } from 'node:assert';
import { Accessibility, launch } from './browser.mjs';
import { closeHarness, harness } from './harness.mjs';

const { KEYWARD } = process.env;
const PASSWORD = 'correct horse battery';
const NEW_PASSWORD = 'a brand new battery staple';

const step = (what) => process.stderr.write(`accounts: ${what}\n`);

const { context, close } = await launch();
context.setDefaultTimeout(120_000);
const a11y = new Accessibility();
try {
  const page = await context.newPage();
  step('sign up');
  await page.goto(`${KEYWARD}/signup`);
  await page.getByLabel('Username').fill('grace');
  await page.getByLabel('Email').fill('grace@example.com');
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();

  step('confirm the address from the mail');
  await page.waitForURL(`${KEYWARD}/verify-email`);
  await page.getByText('We sent a code to').waitFor();
  await a11y.check(page, 'verify email');
  await page.getByLabel('Code').fill('00000000');
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.getByRole('alert').getByText('That code is not right').waitFor();
  await a11y.check(page, 'verify email with an error');
  const verification = await harness('mail', { to: 'grace@example.com', subject: 'confirm your email address' });
  await page.goto(verification.link);
  assert.equal(await page.getByLabel('Code').inputValue(), verification.code, 'the link fills the code in');
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.waitForURL(`${KEYWARD}/account`);
  await page.getByText('grace@example.com').waitFor();
  assert.equal(await page.getByText('(not confirmed)').count(), 0);
  await a11y.check(page, 'account, confirmed');

  step('sign out, forget the password');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${KEYWARD}/signin*`);
  await page.getByRole('link', { name: 'Forgot your password?' }).click();
  await page.waitForURL(`${KEYWARD}/forgot-password`);
  await a11y.check(page, 'forgot password');
  await page.getByLabel('Username or email').fill('grace@example.com');
  await page.getByRole('button', { name: 'Send a code' }).click();
  await page.waitForURL(`${KEYWARD}/reset-password*`);
  await a11y.check(page, 'reset password');

  step('reset it with the mailed code');
  const reset = await harness('mail', { to: 'grace@example.com', subject: 'your password reset code' });
  await page.getByLabel('Code').fill(reset.code);
  await page.getByLabel('New password', { exact: true }).fill('short');
  await page.getByLabel('Repeat new password').fill('short');
  await page.getByRole('button', { name: 'Set new password' }).click();
  await page.getByRole('alert').waitFor();
  await a11y.check(page, 'reset password with an error');
  await page.getByLabel('Code').fill(reset.code);
  await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
  await page.getByLabel('Repeat new password').fill(NEW_PASSWORD);
  await page.getByRole('button', { name: 'Set new password' }).click();
  await page.waitForURL(`${KEYWARD}/signin?reset=1`);
  await page.getByText('Your password was changed').waitFor();
  await a11y.check(page, 'sign in after a reset');

  step('sign in with the new password');
  await page.getByLabel('Username').fill('grace');
  await page.getByLabel('Password').fill(NEW_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${KEYWARD}/account`);

  step('change the email address');
  await page.getByRole('link', { name: 'Change your email address' }).click();
  await page.waitForURL(`${KEYWARD}/account/email`);
  await a11y.check(page, 'change email');
  await page.getByLabel('New email address').fill('grace@new.example');
  await page.getByLabel('Current password').fill(NEW_PASSWORD);
  await page.getByRole('button', { name: 'Send a code' }).click();
  await page.waitForURL(`${KEYWARD}/account/email/confirm`);
  await a11y.check(page, 'confirm new email');
  const change = await harness('mail', { to: 'grace@new.example', subject: 'confirm your new email address' });
  await page.getByLabel('Code').fill(change.code);
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.waitForURL(`${KEYWARD}/account?changed=email`);
  await page.getByText('grace@new.example').waitFor();
  await a11y.check(page, 'account after an email change');

  step('the password and deletion pages');
  for (const [link, path] of [
    ['Change your password', '/account/password'],
    ['Delete your account', '/account/delete'],
  ]) {
    await page.goto(`${KEYWARD}/account`);
    await page.getByRole('link', { name: link }).click();
    await page.waitForURL(`${KEYWARD}${path}`);
    await a11y.check(page, path);
  }

  assert.deepEqual(a11y.violations, [], `accessibility:\n${a11y.violations.join('\n')}`);
  await harness('done');
} finally {
  closeHarness();
  await close();
}
