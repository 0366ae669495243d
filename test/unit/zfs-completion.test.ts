/** The zfs plugin's completion snapshot: its name from the moment the run completed, and the options that ask for it. */
import { describe, expect, it } from 'vitest';
import { COMPLETION_TEMPLATE, compactTime, completionSnapshotName, readonlyFrom } from '../../plugins/zfs/completion.js';
import { advance, type RunFact, type RunRecord } from '../../src/core/runs.js';
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

/** The run after `facts`, as the runs module records it. */
function runAfter(...facts: RunFact[]): RunRecord {
  let run: RunRecord | undefined;
  for (const [i, fact] of facts.entries())
    run = advance(run, fact, { rootdir: '/r', name: 'x' }, new Date(Date.UTC(2026, 11, 7, 10, i))).run;
  return run!;
}

describe('readonly after a delay', () => {
  const converted: RunFact[] = [{ kind: 'converting' }, { kind: 'converted', dataset: 'tank/x' }];
  const complete: RunFact = { kind: 'complete', at: '2026-12-07T09:00:00.000Z', note: 'DONE', policy: 'complete (illumina)' };

  it('counts from the completion, whether it came before or after the conversion, aborted too', () => {
    expect(readonlyFrom(runAfter({ kind: 'detected' }, complete, ...converted))).toBe('2026-12-07T09:00:00.000Z');
    expect(readonlyFrom(runAfter({ kind: 'detected' }, ...converted, complete))).toBe('2026-12-07T09:00:00.000Z');
    expect(readonlyFrom(runAfter(...converted, { ...complete, kind: 'aborted' }))).toBe('2026-12-07T09:00:00.000Z');
  });

  it('a converted run a policy still judges: not yet; one no policy judges (none, a bare quiet): from its conversion', () => {
    const waiting = (policy: string): RunFact => ({ kind: 'waiting', note: 'for its markers', policy });
    expect(readonlyFrom(runAfter(waiting('complete (illumina)'), ...converted))).toBeUndefined();
    expect(readonlyFrom(runAfter(waiting('quiet (nanopore)'), ...converted))).toBeUndefined();
    expect(readonlyFrom(runAfter(waiting('quiet'), ...converted))).toBe('2026-12-07T10:02:00.000Z');
    expect(readonlyFrom(runAfter({ kind: 'detected' }, ...converted))).toBe('2026-12-07T10:02:00.000Z');
    expect(readonlyFrom(runAfter({ kind: 'detected' }))).toBeUndefined();
  });
});
