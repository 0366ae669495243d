/**
 * Every test file: a runtime warning (MaxListenersExceededWarning, a deprecation, …) emitted in
 * the test process fails the test it came in (issue 25: the program logs them, so a test must
 * not let one pass silently). The program's own processes are checked by their stderr.
 */
import { afterEach } from 'vitest';

const seen: Error[] = [];
process.on('warning', (warning) => void seen.push(warning));

afterEach(async () => {
  // Warnings are emitted on the next tick: let those of the test's last moment arrive.
  await new Promise((resolve) => setImmediate(resolve));
  const warnings = seen.splice(0);
  if (warnings.length > 0)
    throw new Error(`runtime warning(s) during the test: ${warnings.map((w) => `${w.name}: ${w.message}`).join('; ')}`);
});
