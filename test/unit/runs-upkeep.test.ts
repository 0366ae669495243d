/**
 * What status shows of the runs (bounded for a root that knows 10,000) and what the sweeps forget:
 * runs whose directory and filesystem are gone, and complete or aborted runs a month after, once
 * converted; never a run converting, with work left, or written since the survey began.
 */
import { describe, expect, it } from 'vitest';
import { RECENT_RUNS, runLines, selectRuns } from '../../src/commands/status.js';
import type { RunRecord, Survey } from '../../src/core/index.js';
import { forgettable } from '../../src/daemon/sweeper.js';
import { FINAL_RUNS_KEPT_DAYS } from '../../src/core/runs.js';

const DAY = 86_400_000;
const now = Date.UTC(2026, 5, 1);
const ago = (ms: number): string => new Date(now - ms).toISOString();
const run = (name: string, state: RunRecord['state'], since: string, more: Partial<RunRecord> = {}): RunRecord => ({
  version: 1,
  rootdir: '/tank/runs',
  name,
  state,
  since,
  detectedAt: since,
  told: [],
  ...more,
});
const survey = (directories: string[], filesystems: string[], leftovers: string[] = []): Survey => ({
  directories: new Set(directories),
  filesystems: new Map(filesystems.map((n) => [n, { mountpoint: `/tank/runs/${n}`, mounted: true }])),
  leftovers: new Set(leftovers),
  ignored: new Set(),
});

describe('the sweeps forget', () => {
  it('a run whose directory and filesystem are both gone, whatever its state', () => {
    const s = survey(['here'], ['done']);
    for (const state of ['waiting', 'stalled', 'converted', 'complete'] as const)
      expect(forgettable(run('gone', state, ago(60_000)), s, now), state).toBe(true);
    expect(forgettable(run('here', 'waiting', ago(60_000)), s, now)).toBe(false);
    expect(forgettable(run('done', 'converted', ago(400 * DAY)), s, now)).toBe(false);
  });

  it('a complete or aborted run converted more than the bound ago; not one still a plain directory', () => {
    const s = survey(['plain'], ['done']);
    const old = ago((FINAL_RUNS_KEPT_DAYS + 1) * DAY);
    expect(forgettable(run('done', 'complete', old), s, now)).toBe(true);
    expect(forgettable(run('done', 'aborted', old), s, now)).toBe(true);
    expect(forgettable(run('done', 'complete', ago((FINAL_RUNS_KEPT_DAYS - 1) * DAY)), s, now)).toBe(false);
    expect(forgettable(run('done', 'stalled', old), s, now)).toBe(false);
    expect(forgettable(run('plain', 'complete', old), s, now)).toBe(false);
  });

  it('never a run converting, one with work left, one written since the survey began, nor one below a level it cannot see', () => {
    const s = survey([], [], ['left']);
    expect(forgettable(run('gone', 'converting', ago(DAY)), s, now)).toBe(false);
    expect(forgettable(run('left', 'waiting', ago(DAY)), s, now)).toBe(false);
    expect(forgettable(run('gone', 'waiting', new Date(now).toISOString()), s, now)).toBe(false);
    expect(forgettable(run('exp/sample/run', 'waiting', ago(DAY)), s, now)).toBe(true);
    expect(forgettable(run('exp/sample/run', 'waiting', ago(DAY)), survey(['exp'], []), now)).toBe(false);
  });
});

describe('status', () => {
  it('lists every open run (stalled first) and the settled ones of the last day, newest first and bounded, with counts of all', () => {
    const all = [
      run('w1', 'waiting', ago(3 * DAY), { note: 'for CopyComplete.txt', policy: 'complete/illumina' }),
      run('s1', 'stalled', ago(DAY), { stalledSince: ago(2 * DAY), note: 'not written to for 24 h' }),
      run('c1', 'converting', ago(60_000)),
      run('old', 'complete', ago(2 * DAY)),
      run('odd', 'lost' as RunRecord['state'], ago(DAY)), // a file edited by hand: left out
      ...Array.from({ length: 10_000 }, (_, i) => run(`r${i}`, 'converted', ago(i * 1000), { dataset: `tank/runs/r${i}` })),
    ];
    const { runs, runCounts, runsOmitted } = selectRuns(all, now);
    expect(runCounts).toEqual({ waiting: 1, stalled: 1, converting: 1, converted: 10_000, complete: 1, aborted: 0 });
    expect(runs.map((r) => r.name).slice(0, 5)).toEqual(['s1', 'w1', 'c1', 'r0', 'r1']);
    expect(runs).toHaveLength(3 + RECENT_RUNS);
    expect(runsOmitted).toBe(10_001 - RECENT_RUNS);
    expect(runs[0]).toEqual({
      name: 's1',
      state: 'stalled',
      since: ago(DAY),
      detectedAt: ago(DAY),
      stalledSince: ago(2 * DAY),
      note: 'not written to for 24 h',
    });
    const lines = runLines({ runs, runCounts, runsOmitted });
    expect(lines[0]).toBe('  runs: 1 waiting, 1 stalled, 1 converting, 10000 converted, 1 complete');
    expect(lines[1]).toMatch(/^ {2}stalled +"s1" needs attention: not written to for 24 h \(stalled since .*, last written to .*\)$/);
    expect(lines[2]).toMatch(/^ {2}waiting +"w1" since \S+: for CopyComplete.txt \(policy complete\/illumina\)$/);
    expect(lines[4]).toMatch(/^ {2}converted +"r0" since \S+ in tank\/runs\/r0$/);
    expect(lines.at(-1)).toBe(`  (${10_001 - RECENT_RUNS} converted, complete or aborted run(s) before the last day not listed)`);
  });
});
