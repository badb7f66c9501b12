// The Rust test's side of a browser script (tests/e2e.rs, `drive`): the script asks for something
// as one JSON line on stdout and reads the answer as one JSON line on stdin.
import { createInterface } from 'node:readline';
import { strict as assert } from 'node:assert';

const lines = createInterface({ input: process.stdin });
const answers = lines[Symbol.asyncIterator]();

/** Asks the Rust side to do `op`; returns its answer. */
export async function harness(op, args = {}) {
  process.stdout.write(`${JSON.stringify({ op, ...args })}\n`);
  const { value, done } = await answers.next();
  assert(!done, 'the harness went away');
  return JSON.parse(value);
}

/** Stops reading stdin, so the process can end. */
export function closeHarness() {
  lines.close();
}
