/** The pure pieces of issue 24's rest: the one human timestamp, the NOTICE line's copy rate. */
import { afterEach, describe, expect, it } from 'vitest';
import { humanTime, localTimestamp } from '../../src/core/logger.js';
import { copyMs, summary } from '../../src/core/engine.js';
import type { StepRecord } from '../../src/core/types.js';

const tz = process.env.TZ;
afterEach(() => {
  if (tz === undefined) delete process.env.TZ;
  else process.env.TZ = tz;
});

describe('humanTime: the system\'s local time with its offset', () => {
  it('shows a UTC instant in the local zone with the offset, seconds or milliseconds', () => {
    process.env.TZ = 'Europe/Paris';
    expect(humanTime('2026-12-07T14:05:06.789Z')).toBe('2026-12-07T15:05:06+01:00');
    expect(humanTime(Date.parse('2026-07-01T00:00:00Z'))).toBe('2026-07-01T02:00:00+02:00');
    expect(localTimestamp(new Date('2026-12-07T14:05:06.789Z'))).toBe('2026-12-07T15:05:06.789+01:00');
    process.env.TZ = 'America/St_Johns';
    expect(humanTime(new Date('2026-12-07T14:05:06Z'))).toBe('2026-12-07T10:35:06-03:30');
    process.env.TZ = 'UTC';
    expect(humanTime('2026-12-07T14:05:06Z')).toBe('2026-12-07T14:05:06+00:00');
  });
  it('returns a text that is not a time as it is', () => {
    expect(humanTime('never')).toBe('never');
  });
});

describe('the NOTICE line: wall time and the copy\'s own rate', () => {
  const at = (s: number): string => new Date(Date.UTC(2026, 11, 7, 14, 0, s)).toISOString();
  const steps: StepRecord[] = [
    { step: 'quiet', phase: 'prepare', state: 'done', at: at(0) },
    { step: 'create', phase: 'provision', state: 'done', at: at(20) },
    { step: 'copy', phase: 'migrate', state: 'done', at: at(21) },
    { step: 'seal', phase: 'migrate', state: 'done', at: at(33) },
    { step: 'remove-original', phase: 'cleanup', state: 'done', at: at(40) },
  ];
  it('takes the copy step\'s time from the journalled steps', () => {
    expect(copyMs(steps)).toBe(12_000);
    expect(copyMs(steps.slice(0, 3))).toBeUndefined();
    expect(copyMs([])).toBeUndefined();
    expect(copyMs([{ step: 'copy', phase: 'recover', state: 'done', at: at(1) }, steps[3]!])).toBeUndefined();
  });
  it('gives the rate over the copy beside the wall time', () => {
    expect(summary({ files: 20_000, bytes: 336 * 2 ** 20 }, 41_500, 12_000)).toBe(': 20,000 files, 336.0 MiB in 41.5 s (copy 12.0 s, 28.0 MiB/s)');
    expect(summary({ files: 20_000, bytes: 336 * 2 ** 20 }, 42_000)).toBe(': 20,000 files, 336.0 MiB in 42.0 s (8.0 MiB/s)');
  });
});
