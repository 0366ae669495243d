import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RunBook, advance, readRuns, runFile, type RunEvent, type RunFact, type RunRecord } from '../../src/core/runs.js';

const where = { rootdir: '/tank/runs', name: '250101_A01_0001_AH' };
const at = (s: number): Date => new Date(Date.UTC(2026, 0, 1, 0, 0, s));

function through(facts: RunFact[]): { run: RunRecord; events: string[] } {
  let run: RunRecord | undefined;
  const events: string[] = [];
  facts.forEach((fact, i) => {
    const r = advance(run, fact, where, at(i));
    run = r.run;
    events.push(...r.events);
  });
  return { run: run!, events };
}

describe('advance (a run state from facts)', () => {
  it('quiet policy: detected, converting, converted; complete later; each event once', () => {
    const { run, events } = through([
      { kind: 'detected' },
      { kind: 'detected' },
      { kind: 'converting' },
      { kind: 'converted', dataset: 'tank/runs/x' },
      { kind: 'complete', at: '2026-01-02T00:00:00.000Z', note: 'CopyComplete.txt' },
      { kind: 'complete', at: '2026-01-03T00:00:00.000Z', note: 'again' },
    ]);
    expect(events).toEqual(['run.detected', 'run.converted', 'run.complete']);
    expect(run).toMatchObject({ state: 'complete', completedAt: '2026-01-02T00:00:00.000Z', dataset: 'tank/runs/x' });
  });

  it('complete policy: complete before converting stays complete after the conversion', () => {
    const { run, events } = through([
      { kind: 'waiting', note: 'CopyComplete.txt', policy: 'complete (illumina)' },
      { kind: 'complete', at: '2026-01-02T00:00:00.000Z', note: 'CopyComplete.txt' },
      { kind: 'converting' },
      { kind: 'converted' },
    ]);
    expect(events).toEqual(['run.detected', 'run.complete', 'run.converted']);
    expect(run.state).toBe('complete');
    expect(run.policy).toBe('complete (illumina)');
  });

  it('a stall is told once per stall, and not after completion', () => {
    const { run, events } = through([
      { kind: 'detected' },
      { kind: 'stalled', since: '2026-01-01T00:00:00.000Z', note: 'no write for 24 h' },
      { kind: 'stalled', since: '2026-01-01T00:00:00.000Z', note: 'no write for 25 h' },
      { kind: 'active', note: 'written to again' },
      { kind: 'stalled', since: '2026-01-01T05:00:00.000Z', note: 'no write for 24 h' },
      { kind: 'aborted', at: '2026-01-04T00:00:00.000Z', note: 'RunCompletionStatus.xml: StoppedByUser' },
      { kind: 'stalled', since: '2026-01-05T00:00:00.000Z', note: 'x' },
    ]);
    expect(events).toEqual(['run.detected', 'run.stalled', 'run.stalled', 'run.aborted']);
    expect(run.state).toBe('aborted');
    expect(run.stalledSince).toBeUndefined();
  });

  it('another directory of the name before the conversion (another inode) is another run; after it, or converting, the same', () => {
    const { run, events } = through([
      { kind: 'detected', ino: 7 },
      { kind: 'complete', at: '2026-01-02T00:00:00.000Z', note: 'DONE' },
      { kind: 'detected', ino: 7 },
      { kind: 'detected', ino: 9 },
    ]);
    expect(events).toEqual(['run.detected', 'run.complete', 'run.detected']);
    expect(run).toMatchObject({ state: 'waiting', ino: 9, told: ['run.detected'] });
    expect(run.completion).toBeUndefined();
    const converted = through([{ kind: 'detected', ino: 7 }, { kind: 'converting' }, { kind: 'detected', ino: 8 }, { kind: 'converted' }]);
    expect(converted.run).toMatchObject({ state: 'converted', ino: 8 });
    expect(converted.events).toEqual(['run.detected', 'run.converted']);
    expect(through([{ kind: 'detected' }, { kind: 'detected', ino: 3 }]).events).toEqual(['run.detected']);
  });

  it('a conversion that did not happen leaves it waiting; since moves only with the state', () => {
    const a = advance(undefined, { kind: 'detected' }, where, at(0)).run;
    const b = advance(a, { kind: 'waiting', note: 'x' }, where, at(5)).run;
    expect(b.since).toBe(a.since);
    const c = advance(b, { kind: 'converting' }, where, at(9)).run;
    const d = advance(c, { kind: 'unconverted', note: 'failed' }, where, at(12)).run;
    expect([c.state, d.state, d.since]).toEqual(['converting', 'waiting', at(12).toISOString()]);
  });
});

describe('RunBook', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'zdc-runs-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('records before telling, tells each event once across instances (a restart), forgets', async () => {
    const told: RunEvent[] = [];
    const book = (dryRun = false): RunBook => new RunBook(dir, '/tank/runs', { dryRun, tell: async (e) => void told.push(e) });
    await book().note('r1', { kind: 'detected' });
    await book().note('r1', { kind: 'detected' });
    await book().note('r1', { kind: 'complete', at: at(3).toISOString(), note: 'DONE' });
    expect(told.map((e) => e.event)).toEqual(['run.detected', 'run.complete']);
    expect(told[1]!.run.state).toBe('complete');
    expect((await book().get('r1'))?.told).toEqual(['run.detected', 'run.complete']);
    await book(true).note('r2', { kind: 'detected' });
    expect(await book().list()).toHaveLength(1);
    await book().forget('r1');
    expect(await book().get('r1')).toBeUndefined();
  });

  it("readRuns: every root's runs, or one root's; more files than a batch of descriptors; a damaged file left out", async () => {
    const book = (rootdir: string): RunBook => new RunBook(dir, rootdir, { dryRun: false, tell: async () => undefined });
    for (let i = 0; i < 150; i++) await book('/tank/runs').note(`r${String(i).padStart(3, '0')}`, { kind: 'detected' });
    await book('/tank/other').note('x', { kind: 'detected' });
    await writeFile(runFile(dir, '/tank/runs', 'damaged'), '{"version":1,');
    expect(await readRuns(dir)).toHaveLength(151);
    expect((await readRuns(dir, '/tank/other')).map((r) => r.name)).toEqual(['x']);
    const runs = await book('/tank/runs').list();
    expect(runs).toHaveLength(150);
    expect(runs[0]!.name).toBe('r000');
  });
});
