/**
 * Issue 20, "Safety across a long run", on the real pool against the `watch` daemon: a simulated
 * instrument (test/helpers/instrument.ts, as nobody) writes a run folder in cycles while the run
 * is converted. Whatever meets the conversion (its working directory in the run folder and
 * relative paths, a log held open and appended through its descriptor, InterOp files rewritten in
 * place, new subdirectories, a late writer after the completion markers, the daemon restarted
 * while it waits and while it converts), every write succeeds and every file ends in the dataset
 * exactly as last written: nothing lost, reverted or duplicated, nothing left in the holding
 * directory.
 *
 * Each policy runs the same bodies. `quiet` (today's default) converts at the first silent gap
 * longer than the quiet period, mid-run; the instrument is not seen as a holder before the copy
 * (checkOpenFiles: false, as an instrument writing over NFS is not), so the conversion meets it.
 * A policy that converts after the markers says so with `midRun: false`.
 * Already shown elsewhere, not repeated here: writes during the bulk copy (safety-writers), a
 * writer in another mount namespace (siege-ns), SIGTERM during the copy (watch).
 */
import { existsSync } from 'node:fs';
import { chmod, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobId } from '../../src/core/journal.js';
import { lockPath } from '../../src/core/lock.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import {
  differencesFrom,
  lateWriter,
  merged,
  startInstrument,
  type Instrument,
  type InstrumentPlan,
  type Written,
} from '../helpers/instrument.js';
import { helperPath, leftovers } from '../helpers/state.js';
import { scaled } from '../helpers/time.js';
import { createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('instruments', 256);
  // The instrument (nobody) makes its run folder in the root, as on a sequencing share.
  await chmod(p.mount, 0o1777);
});
afterAll(async () => {
  await p?.destroy();
});

const QUIET_SECONDS = 1;
/** Within a cycle and between the cycles of a run still settling: shorter than the quiet period. */
const BUSY_MS = scaled(250);
/** The silent gap between two cycles: longer than the quiet period. */
const SILENT_MS = scaled(2000);
const WATCH = { concurrency: 2, sweepIntervalSeconds: 300 };
const RSYNC = { graceSeconds: 1, maxGraceSeconds: scaled(120_000) / 1000 };

/**
 * A completion policy under test: its plugin list (the rsync options above kept), whether it
 * converts at a silent gap of the run (that gap is then held until the swap is over) or only
 * after the markers, and, if it cares, when the markers come after the last cycle.
 */
interface Policy {
  readonly name: string;
  readonly plugins: unknown[];
  readonly midRun: boolean;
  readonly markers?: InstrumentPlan['markers'];
}

const POLICIES: Policy[] = [
  {
    name: 'quiet',
    plugins: fastPlugins({ quiet: { quietSeconds: QUIET_SECONDS, checkOpenFiles: false }, rsync: RSYNC }),
    midRun: true,
  },
  {
    // Converted once the run says it is complete (Illumina's markers for its instrument), then quiet.
    name: 'complete',
    plugins: [
      ['completion', { policy: 'complete', preset: 'illumina', markerAgeSeconds: 0, recheckSeconds: 1 }],
      ...fastPlugins({ quiet: { quietSeconds: QUIET_SECONDS, checkOpenFiles: false }, rsync: RSYNC }),
    ],
    midRun: false,
  },
];

/** A run of `cycles` cycles whose first silent gap follows cycle `firstSilent` (busy before, silent after). */
function plan(policy: Policy, dir: string, cycles: number, firstSilent: number): InstrumentPlan {
  const gaps = Array.from({ length: cycles }, (_, i) =>
    i + 1 < firstSilent ? BUSY_MS : i + 1 === firstSilent && policy.midRun ? ('hold' as const) : SILENT_MS,
  );
  const markers = policy.markers ?? { rtaCompleteMs: SILENT_MS, copyCompleteMs: SILENT_MS };
  return { dir, cycles, tiles: 3, writeGapMs: BUSY_MS, gaps, markers };
}

/** Resolves once `dir` is a mounted dataset (the swap is over). */
async function swapped(dir: string): Promise<void> {
  const deadline = Date.now() + scaled(90_000);
  while (!(await datasets(p.pool)).some((d) => d.mountpoint === dir && d.mounted === 'yes')) {
    if (Date.now() > deadline) throw new Error(`${dir} is not a mounted dataset after ${scaled(90_000)} ms`);
    await sleep(200);
  }
}

/** Lets the instrument go on past the gap where the policy converts, once the swap is over. */
async function throughTheSwap(policy: Policy, instrument: Instrument, dir: string, firstSilent: number): Promise<void> {
  if (!policy.midRun) return;
  await instrument.reached(`gap ${firstSilent} hold`);
  await swapped(dir);
  instrument.go();
}

/** The instrument, then, once the run is swapped (it writes by path), the demultiplexer. */
async function finishRun(instrument: Instrument, dir: string): Promise<Written> {
  const run = await instrument.written;
  await swapped(dir);
  return merged(run, await lateWriter({ dir, files: 4, writeGapMs: BUSY_MS }));
}

/**
 * The run is a live dataset mounted at its path, holding exactly what was last written, nothing
 * left behind; the daemon logged no error (but those `expected`) and no conflict.
 */
async function expectWhole(daemon: Daemon, name: string, written: Written, expected?: RegExp): Promise<void> {
  const dir = join(p.mount, name);
  await daemon.waitFor(`converted into ${p.pool}/${name}`, scaled(120_000));
  expect((await datasets(p.pool)).find((d) => d.mountpoint === dir)).toEqual({
    name: `${p.pool}/${name}`,
    mountpoint: dir,
    mounted: 'yes',
    state: 'live',
  });
  expect((await stat(dir)).dev).not.toBe((await stat(p.mount)).dev);
  expect(await differencesFrom(dir, written)).toEqual([]);
  expect(await leftovers(p)).toEqual([]);
  const errors = daemon
    .output()
    .split('\n')
    .filter((l) => /ERROR|conflict/.test(l));
  expect(errors.filter((l) => expected === undefined || !expected.test(l))).toEqual([]);
}

describe.each(POLICIES)('a run written by an instrument, the $name policy', (policy) => {
  it('converted while written: cwd and relative paths, a held descriptor, in-place rewrites, new subdirectories, a late writer', async () => {
    const name = `251207_M04242_0042_000000000-${policy.name.toUpperCase()}1`;
    const dir = join(p.mount, name);
    const config = await writeConfig(p, policy.plugins, { watch: WATCH }, `${policy.name}-writers.json`);
    const daemon = await startDaemon(p, config);
    const instrument = startInstrument(plan(policy, dir, 5, 2));
    await throughTheSwap(policy, instrument, dir, 2);
    const written = await finishRun(instrument, dir);
    // Written (mid-run: after the swap) through each of its channels: all had to be carried over.
    expect(written.dirs).toContain('Data/Intensities/BaseCalls/L001/C5.1');
    expect(written.dirs).toContain('Thumbnail_Images/L001/C5.1');
    await expectWhole(daemon, name, written);
    expect(await daemon.stop()).toBe(0);
  });

  it('the daemon stopped and started again while the run waits, during its copy and in its grace period: nothing lost, reverted or duplicated', async () => {
    const name = `20261207_LH00042_0043_B22FOO${policy.name.toUpperCase()}`;
    const dir = join(p.mount, name);
    // The daemon sends itself SIGTERM (as `systemctl stop` does) once, as the run's copy is sealed.
    const stopInCopy = ['fault-injection', { killAt: 'migrate/seal', signal: 'SIGTERM', names: [name] }];
    const config = await writeConfig(p, [...policy.plugins, stopInCopy], { watch: WATCH }, `${policy.name}-restarts.json`);
    const waiting = await startDaemon(p, config);
    const instrument = startInstrument(plan(policy, dir, 6, 3));
    // Stopped in the middle of the wait (quiet: the job holds the run's lock; complete: the run
    // waits for its markers, recorded, holding nothing); the run is left as it is.
    const lock = policy.midRun ? lockPath(p.stateDir, jobId(p.mount, name)) : join(p.stateDir, 'runs', `${jobId(p.mount, name)}.json`);
    for (const deadline = Date.now() + scaled(30_000); !existsSync(lock) && Date.now() < deadline;) await sleep(50);
    expect(existsSync(lock)).toBe(true);
    await instrument.reached('cycle 1');
    expect(await waiting.stop()).toBe(0);
    if (policy.midRun) expect(waiting.output()).toContain(`[${name}] deferred: stopped while waiting`);
    else expect((await stat(dir)).dev).toBe((await stat(p.mount)).dev);
    // Stopped in the middle of the copy: rolled back, the run still at its path and written to.
    const copying = await startDaemon(p, config);
    await copying.waitFor(new RegExp(`\\[${name}\\] stopped during migrate.*rolled back`), scaled(60_000));
    expect(await copying.exited).toBe(0);
    let last = await startDaemon(p, config);
    await throughTheSwap(policy, instrument, dir, 3);
    if (policy.midRun) {
      // Stopped in the middle of the grace period: the original, aside, still has a writer (its
      // cwd, its held log); the job is past its commit point and left for the next start.
      await instrument.reached('cycle 4');
      expect(await last.stop()).toBe(0);
      expect(last.output()).toMatch(
        new RegExp(`\\[${name}\\] stopped during cleanup: stopped during the grace period; the original is kept`),
      );
      expect(existsSync(helperPath(p, name, 'orig'))).toBe(true);
      last = await startDaemon(p, config);
    }
    const written = await finishRun(instrument, dir);
    await expectWhole(last, name, written);
    expect(await last.stop()).toBe(0);
  });
});

// What only a policy that converts mid-run meets.
describe.each(POLICIES.filter((policy) => policy.midRun))('a run converted mid-run, the $name policy', (policy) => {
  it('converted in the middle of a cycle: the cycles go on through the copy, the seal, the swap and the catch-up', async () => {
    const name = `251207_NB501234_0044_AHFOO${policy.name.toUpperCase()}`;
    const dir = join(p.mount, name);
    const config = await writeConfig(p, policy.plugins, { watch: WATCH }, `${policy.name}-cycle.json`);
    const daemon = await startDaemon(p, config);
    // Gaps growing by 300 ms from just over the quiet period, none held: the first one long
    // enough for the wait to see it ends while the copy has begun, and the cycles go on into the
    // conversion, wherever it is. Only through the working directory and the held log.
    const gaps = Array.from({ length: 6 }, (_, i) => scaled(QUIET_SECONDS * 1000 + 300 * (i + 1)));
    const run: InstrumentPlan = { ...plan(policy, dir, 7, 1), gaps, byPath: false };
    const written = await finishRun(startInstrument(run), dir);
    expect(written.dirs).toContain('Thumbnail_Images/L001/C5.1');
    await expectWhole(daemon, name, written);
    expect(await daemon.stop()).toBe(0);
  });

  // A real run lasts days, far longer than maxGraceSeconds (600 s by default).
  it('a run that outlasts the limit of the grace period: the original is kept while written, and retired once the run is over', async () => {
    const name = `251207_A01234_0045_BHLONG${policy.name.toUpperCase()}`;
    const dir = join(p.mount, name);
    const plugins = policy.plugins.map((x) => (Array.isArray(x) && x[0] === 'rsync' ? ['rsync', { ...RSYNC, maxGraceSeconds: 2 }] : x));
    const config = await writeConfig(p, plugins, { watch: { ...WATCH, sweepIntervalSeconds: 3 } }, `${policy.name}-long.json`);
    const daemon = await startDaemon(p, config);
    const instrument = startInstrument(plan(policy, dir, 6, 2));
    await throughTheSwap(policy, instrument, dir, 2);
    const written = await finishRun(instrument, dir);
    // Meanwhile (converted mid-run) the cleanup gave up, an error each time, the original kept, and was tried again.
    const kept = new RegExp(`ERROR: \\[${name}\\] .*(was still in use|kept changing) .*; it is kept, not removed`);
    if (policy.midRun) expect(daemon.output()).toMatch(kept);
    await expectWhole(daemon, name, written, kept);
    // And it exits once stopped: the retry timer of a job a sweep finished no longer keeps it
    // running (until force-killed) after "stopped".
    expect(await daemon.stop()).toBe(0);
  });
});
