// What every browser script here shares: Debian's Chromium in a fresh profile, launched by
// playwright-core (never a downloaded browser), and axe-core on a page in light and dark mode.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

/** A new browser with a profile of its own; `close()` ends it and removes the profile. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'keyward-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    chromiumSandbox: false,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Collects serious and critical axe-core findings of pages, light and dark. */
export class Accessibility {
  violations = [];

  async check(page, name) {
    for (const colorScheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme });
      const { violations: found } = await new AxeBuilder({ page }).analyze();
      for (const v of found.filter((f) => f.impact === 'serious' || f.impact === 'critical')) {
        const where = v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`).join('\n    ');
        this.violations.push(`${name} (${colorScheme}): ${v.id} (${v.impact}) ${v.help}\n    ${where}`);
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
  }
}
