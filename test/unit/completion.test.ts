/**
 * The completion plugin's taps through the plugin test kit (real hooks, jobs, run records in a
 * temp directory): waiting without markers (looked at again, silent after the first line),
 * complete, aborted, stalled once and active again, onStall convert, the quiet policy, the sync
 * tap after a conversion, a folder replaced while waiting, and doctor's lines.
 */
import { mkdir, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { IdentityError, type DoctorContext, type RunEventName } from '../../src/index.js';
import { testRoot, type TestRoot } from '../../src/testing.js';
import completion from '../../plugins/completion/index.js';
import quietWait from '../../plugins/quiet-wait/index.js';
import { completionDoctor } from '../../plugins/completion/doctor.js';
import { options } from '../../plugins/completion/options.js';
import { presetRules } from '../../plugins/completion/presets.js';

const NOVASEQ_X = '20240131_LH00123_0042_A22ABCDLT3';
let root: TestRoot | undefined;
afterEach(async () => {
  await root?.dispose();
  root = undefined;
});

/** A root with the plugin applied with `opts`, its run events heard, and the run folder `name` made. */
async function setUp(opts: Record<string, unknown>, name = NOVASEQ_X): Promise<{ root: TestRoot; events: RunEventName[]; run: string }> {
  root = await testRoot({ dirs: [name] });
  await root.use(completion, opts);
  const events: RunEventName[] = [];
  root.hooks.run.tap('test', (event) => void events.push(event.event));
  const run = join(root.rootdir, name);
  await writeFile(join(run, 'RunInfo.xml'), '<RunInfo/>');
  return { root, events, run };
}

async function marker(run: string, name: string, ageSeconds: number, text = ''): Promise<void> {
  await writeFile(join(run, name), text);
  const t = (Date.now() - ageSeconds * 1000) / 1000;
  await utimes(join(run, name), t, t);
}

const lines = (r: TestRoot, pattern: RegExp): string[] => r.messages('completion').filter((m) => pattern.test(m));

describe('completion: the wait tap under the complete policy', () => {
  it('taps wait and sync; a run without its markers waits, looked at again after recheckSeconds, logged once', async () => {
    const { root, run } = await setUp({ preset: 'illumina', recheckSeconds: 30 });
    expect(root.hooks.wait.taps.map((t) => t.name)).toEqual(['completion']);
    expect(root.hooks.sync.taps.map((t) => t.name)).toEqual(['completion']);
    await marker(run, 'RTAComplete.txt', 600);
    const job = await root.job(NOVASEQ_X);
    const note = 'waiting for CopyComplete.txt (NovaSeq X (instrument LH00123))';
    expect(await root.wait(job)).toEqual({ defer: note, waiting: true, recheckSeconds: 30 });
    expect(await root.wait(await root.job(NOVASEQ_X))).toEqual({ defer: note, waiting: true, recheckSeconds: 30 });
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'waiting', note, policy: 'complete (illumina)' });
    expect(lines(root, /waiting for/)).toEqual([note]);
  });

  it('complete once CopyComplete.txt is old enough: noted at the marker time, then quiet-wait decides', async () => {
    const { root, events, run } = await setUp({ preset: 'illumina' });
    await marker(run, 'CopyComplete.txt', 10);
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({ waiting: true });
    await marker(run, 'CopyComplete.txt', 120);
    expect(await root.wait(await root.job(NOVASEQ_X))).toBeUndefined();
    const rec = await root.context.runs.get(NOVASEQ_X);
    expect(rec).toMatchObject({
      state: 'complete',
      completion: 'complete',
      note: 'CopyComplete.txt present (NovaSeq X (instrument LH00123))',
    });
    expect(Date.now() - Date.parse(rec!.completedAt!)).toBeGreaterThanOrEqual(119_000);
    expect(events).toEqual(['run.detected', 'run.complete']);
    expect(lines(root, /^complete: /)).toHaveLength(1);
  });

  it('aborted: RunCompletionStatus.xml says stopped; converted all the same, told once, a warning', async () => {
    const { root, events, run } = await setUp({ preset: 'illumina' });
    const xml = '<RunCompletionStatus><CompletionStatus>UserEndedEarly</CompletionStatus></RunCompletionStatus>';
    await marker(run, 'RunCompletionStatus.xml', 300, xml);
    expect(await root.wait(await root.job(NOVASEQ_X))).toBeUndefined();
    expect(await root.wait(await root.job(NOVASEQ_X))).toBeUndefined();
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'aborted', completion: 'aborted' });
    expect(events).toEqual(['run.detected', 'run.aborted']);
    expect(root.logs.filter((r) => r.level === 'warning' && /^aborted: /.test(r.message))).toHaveLength(1);
  });

  it('stalled once nothing is written for staleAfterSeconds: one warning, still waiting; active again when written to', async () => {
    const { root, events, run } = await setUp({ preset: 'illumina', staleAfterSeconds: 1 });
    await sleep(1200);
    const first = await root.wait(await root.job(NOVASEQ_X));
    expect(first).toMatchObject({
      waiting: true,
      defer: expect.stringMatching(/^stalled: nothing written since .*, waiting for CopyComplete.txt/),
    });
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({ waiting: true });
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'stalled' });
    expect(root.logs.filter((r) => r.level === 'warning' && /^stalled: /.test(r.message))).toHaveLength(1);
    expect(events).toEqual(['run.detected', 'run.stalled']);
    await writeFile(join(run, 'InterOp.bin'), 'cycle 2');
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({ waiting: true, defer: expect.stringMatching(/^waiting for/) });
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'waiting' });
    expect(lines(root, /^active again/)).toHaveLength(1);
  });

  it('onStall convert: a stalled run goes on to the quiet window', async () => {
    const { root } = await setUp({ preset: 'illumina', staleAfterSeconds: 1, onStall: 'convert' });
    await sleep(1200);
    expect(await root.wait(await root.job(NOVASEQ_X))).toBeUndefined();
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'stalled' });
    expect(lines(root, /converting it anyway \(onStall: convert\)/)).toHaveLength(1);
  });

  it('a marker that is a symlink is no marker: one warning, waiting, the note says why', async () => {
    const { root, run } = await setUp({ preset: 'illumina' });
    await marker(run, 'elsewhere', 300);
    await symlink('elsewhere', join(run, 'CopyComplete.txt'));
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({
      waiting: true,
      defer: expect.stringContaining('CopyComplete.txt is a symlink, not a file'),
    });
    expect(await root.wait(await root.job(NOVASEQ_X))).toMatchObject({ waiting: true });
    expect(root.logs.filter((r) => r.level === 'warning' && r.message.includes('is a symlink'))).toHaveLength(1);
  });

  it('a folder replaced by another of its name while it waits is refused, never judged', async () => {
    const { root, run } = await setUp({ preset: 'illumina' });
    const job = await root.job(NOVASEQ_X);
    await rename(run, `${run}.old`);
    await mkdir(run);
    await marker(run, 'CopyComplete.txt', 300);
    await expect(root.wait(job)).rejects.toBeInstanceOf(IdentityError);
    expect(await root.context.runs.get(NOVASEQ_X)).toBeUndefined();
  });
});

describe('completion: the quiet policy and the sync tap', () => {
  it('quiet: nothing waits; a run already complete is noted so', async () => {
    const { root, run } = await setUp({ policy: 'quiet', preset: 'nanopore' }, '20240131_1200_1A_PAO12345_abcdef01');
    const name = '20240131_1200_1A_PAO12345_abcdef01';
    expect(await root.wait(await root.job(name))).toBeUndefined();
    expect(await root.context.runs.get(name)).toBeUndefined();
    await marker(run, 'final_summary_PAO12345_abcdef01.txt', 300);
    expect(await root.wait(await root.job(name))).toBeUndefined();
    expect(await root.context.runs.get(name)).toMatchObject({ state: 'complete', policy: 'quiet (nanopore)' });
  });

  it("its wait tap runs before quiet-wait's, wherever it is in the list (STAGE.completion)", async () => {
    root = await testRoot();
    await root.use(quietWait);
    await root.use(completion, { preset: 'marker' });
    expect(root.hooks.wait.taps.map((t) => t.name)).toEqual(['completion', 'quiet-wait']);
  });

  it('quiet without rules taps nothing but doctor', async () => {
    root = await testRoot();
    expect(await root.use(completion, { policy: 'quiet' })).toEqual(['doctor']);
    expect(root.hooks.doctor.taps.map((t) => t.name)).toEqual(['completion']);
  });

  it('sync: a run converted before its markers is noted complete once they are in its dataset', async () => {
    const { root, events, run } = await setUp({ policy: 'quiet', preset: 'illumina' });
    await root.context.runs.note(NOVASEQ_X, { kind: 'converted', dataset: 'tank/test/x' });
    const survey = await root.survey({ filesystems: new Map([[NOVASEQ_X, { mountpoint: run, mounted: true }]]) });
    await root.sync(survey);
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({
      state: 'converted',
      note: 'waiting for CopyComplete.txt (NovaSeq X (instrument LH00123))',
    });
    await marker(run, 'CopyComplete.txt', 120);
    await root.sync(survey);
    expect(await root.context.runs.get(NOVASEQ_X)).toMatchObject({ state: 'complete', dataset: 'tank/test/x' });
    expect(events).toEqual(['run.detected', 'run.converted', 'run.complete']);
    // Not mounted where the run is: not looked at.
    await root.context.runs.note('gone', { kind: 'converted' });
    await rm(join(root.rootdir, NOVASEQ_X), { recursive: true });
    await root.sync(await root.survey());
  });
});

describe('completion: options and doctor', () => {
  it('refuses an unknown preset, both a preset and rules, and complete without either', () => {
    expect(() => options.parse({ preset: 'sanger' })).toThrow(/preset/);
    expect(() => options.parse({ preset: 'marker', rules: [{ name: 'x', all: ['DONE'] }] })).toThrow(/not both/);
    expect(() => options.parse({})).toThrow(/needs a preset or rules/);
    expect(options.parse({ preset: 'marker' })).toMatchObject({
      policy: 'complete',
      marker: 'DONE',
      markerAgeSeconds: 60,
      staleAfterSeconds: 86_400,
      onStall: 'wait',
      recheckSeconds: 60,
    });
  });

  it("summarizes the root's policy, fails rules that can never be met, warns without a fallback rule", () => {
    const doctor = {
      label: 'roots[0]',
      optionAt: (_p: string, path: readonly string[]) => `config c.yaml: roots[0].plugins[1][1].${path.join('.')}`,
    } as unknown as DoctorContext;
    const opts = options.parse({ rules: [{ name: 'bad', instrument: '^X', all: ['../DONE'] }] });
    const checks = completionDoctor([], doctor, opts, opts.rules!);
    expect(checks.map((c) => [c.name, c.status])).toEqual([
      ['roots[0].completion', 'info'],
      ['roots[0].completion.rules', 'fail'],
      ['roots[0].completion.rules', 'warn'],
    ]);
    expect(checks[1]!.message).toBe(
      'config c.yaml: roots[0].plugins[1][1].rules.0 (bad) can never be met: ../DONE has "." or "..": markers are inside the run; change the rule',
    );
    const good = options.parse({ preset: 'illumina' });
    const ok = completionDoctor([], doctor, good, presetRules('illumina', 'DONE'));
    expect(ok).toHaveLength(1);
    expect(ok[0]!.message).toMatch(
      /^policy complete \(illumina\): converted once complete \(NovaSeq X; .*\), markers 60 s old, stalled after 86400 s/,
    );
  });
});
