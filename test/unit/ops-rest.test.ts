/** The pure pieces of issue 24's rest: the one human timestamp. */
import { afterEach, describe, expect, it } from 'vitest';
import { humanTime, localTimestamp } from '../../src/core/logger.js';

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
