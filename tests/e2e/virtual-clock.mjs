// Loaded with `node --import` by the e2e test: this process's clock reads the test's clock, a file
// holding Unix milliseconds that the test writes when it moves Keyward's clock. So notes-api
// judges `exp` by the same time Keyward signs with, and no step of the test waits for real time.
import { readFileSync } from 'node:fs';

const file = process.env.E2E_CLOCK_FILE;
const RealDate = Date;
const now = () => Number(readFileSync(file, 'utf8'));

globalThis.Date = class VirtualDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(now());
    else super(...args);
  }

  static now() {
    return now();
  }
};
