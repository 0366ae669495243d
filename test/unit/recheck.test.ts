/**
 * The daemon's recheck of a waiting run: a wait tap may ask for any positive number of seconds
 * (the contract), and completion's recheckSeconds has no upper bound; a timer longer than Node
 * holds must not become a look every millisecond.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { recheckDelayMs } from '../../src/daemon/daemon.js';

describe('the recheck timer of a waiting run', () => {
  it('30 days, or Infinity, waits the longest a timer can (no TimeoutOverflowWarning, not fired at once)', async () => {
    for (const seconds of [2_592_000, Infinity]) {
      let fired = false;
      const timer = setTimeout(() => (fired = true), recheckDelayMs(seconds));
      await sleep(50);
      clearTimeout(timer);
      expect(fired).toBe(false);
    }
    expect(recheckDelayMs(60)).toBe(60_000);
  });
});
