/** The zfs plugin's completion snapshot: its name from the moment the run completed, and the options that ask for it. */
import { describe, expect, it } from 'vitest';
import { COMPLETION_TEMPLATE, compactTime, completionSnapshotName } from '../../plugins/zfs/completion.js';
import { options } from '../../plugins/zfs/options.js';

describe('the completion snapshot', () => {
  it('is named after the moment the run completed: UTC, to the second, in ISO 8601 basic format', () => {
    expect(compactTime('2026-12-07T10:15:00.000Z')).toBe('20261207T101500Z');
    expect(compactTime('2026-12-07T11:15:59.999+01:00')).toBe('20261207T101559Z');
    expect(completionSnapshotName(COMPLETION_TEMPLATE, 'complete', '2026-12-07T10:15:00.000Z')).toBe('complete-20261207T101500Z');
    expect(completionSnapshotName(COMPLETION_TEMPLATE, 'aborted', '2026-01-02T03:04:05Z')).toBe('aborted-20260102T030405Z');
    expect(completionSnapshotName('run-{time}', 'aborted', '2026-01-02T03:04:05Z')).toBe('run-20260102T030405Z');
    expect(() => compactTime('yesterday')).toThrow(/not a time/);
  });

  it('snapshotOnComplete: true is the template {state}-{time}; a template must make a snapshot name', () => {
    expect(options.parse({ snapshotOnComplete: true }).snapshotOnComplete).toBe('{state}-{time}');
    expect(options.parse({ snapshotOnComplete: 'done.{time}' }).snapshotOnComplete).toBe('done.{time}');
    expect(options.parse({}).snapshotOnComplete).toBeUndefined();
    expect(() => options.parse({ snapshotOnComplete: 'done@{time}' })).toThrow(/not a ZFS snapshot name/);
    expect(() => options.parse({ snapshotOnComplete: '{when}' })).toThrow(/not a ZFS snapshot name/);
    expect(() => options.parse({ snapshotOnComplete: false })).toThrow();
    // The snapshot at the end of the conversion keeps its meaning beside it.
    expect(options.parse({ snapshot: 'converted', snapshotOnComplete: true, readonlyAfterSeconds: 3600 })).toMatchObject({
      snapshot: 'converted',
      readonlyAfterSeconds: 3600,
    });
    expect(() => options.parse({ readonlyAfterSeconds: -1 })).toThrow();
  });
});
