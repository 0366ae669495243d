/**
 * The completion plugin under the daemon, on a real pool: a NovaSeq X run under the complete
 * policy is not converted while it is written, and is once CopyComplete.txt is there (then the
 * quiet window), recorded complete; a run stopped on the instrument is converted and recorded
 * aborted; a stalled run is reported once and, with onStall wait, left as it is.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { jobId } from '../../src/core/journal.js';
import type { RunRecord } from '../../src/core/runs.js';
import { startDaemon } from '../helpers/daemon.js';
import { scaled } from '../helpers/time.js';
import { createPool, datasetStates, fastPlugins, waitLive, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;
beforeAll(async () => {
  p = await createPool('completion');
});
afterAll(async () => {
  await p?.destroy();
});

const WATCH = { watch: { concurrency: 2, sweepIntervalSeconds: 300 } };

/** A config whose completion plugin (before quiet-wait) has `opts`; markers 1 s old, looked at every 0.5 s. */
function config(opts: Record<string, unknown>): Promise<string> {
  const completion = ['completion', { preset: 'illumina', markerAgeSeconds: 1, recheckSeconds: 0.5, ...opts }];
  return writeConfig(p, fastPlugins({ more: [completion] }), WATCH);
}

async function runRecord(name: string): Promise<RunRecord> {
  return JSON.parse(await readFile(join(p.stateDir, 'runs', `${jobId(p.mount, name)}.json`), 'utf8')) as RunRecord;
}

/** The run's record once its job has ended (the dataset is live before the job notes it converted). */
async function settledRun(name: string): Promise<RunRecord> {
  for (let deadline = Date.now() + scaled(30_000); ; await sleep(100)) {
    const run = await runRecord(name);
    if (run.state !== 'converting' || Date.now() > deadline) return run;
  }
}

/** Writes a cycle file into `dir` every `ms` until stopped (as an instrument does, faster). */
function cycles(dir: string, ms: number): { stop: () => Promise<number> } {
  let running = true;
  const done = (async () => {
    let i = 0;
    for (; running; i++) {
      await writeFile(join(dir, `C${i}.1.cbcl`), `cycle ${i}\n`);
      await sleep(ms);
    }
    return i;
  })();
  const stop = async (): Promise<number> => {
    running = false;
    return done;
  };
  onTestFinished(async () => {
    await stop();
  });
  return { stop };
}

describe('completion under watch', () => {
  it('NovaSeq X, complete policy: not converted while written, converted after CopyComplete.txt, recorded complete', async () => {
    const name = '20240131_LH00123_0042_A22ABCDLT3';
    const daemon = await startDaemon(p, await config({}));
    const dir = join(p.mount, name);
    await mkdir(dir);
    await writeFile(join(dir, 'RunInfo.xml'), '<RunInfo/>\n');
    const writer = cycles(dir, 200);
    await daemon.waitFor('waiting for CopyComplete.txt (NovaSeq X (instrument LH00123))');
    await sleep(scaled(2500)); // writing, and silent for longer than quiet-wait's 0.3 s between cycles
    await writeFile(join(dir, 'RTAComplete.txt'), 'done\n');
    await sleep(scaled(1500));
    expect((await datasetStates(p)).has(name)).toBe(false);
    const written = await writer.stop();
    await writeFile(join(dir, 'CopyComplete.txt'), '');
    await waitLive(p, [name], scaled(60_000));
    for (let i = 0; i < written; i++) expect(await readFile(join(dir, `C${i}.1.cbcl`), 'utf8')).toBe(`cycle ${i}\n`);
    expect(await settledRun(name)).toMatchObject({ state: 'complete', completion: 'complete', dataset: `${p.pool}/${name}` });
    expect(daemon.output()).toContain('complete: CopyComplete.txt present (NovaSeq X (instrument LH00123))');
    expect(daemon.output().match(/waiting for CopyComplete.txt \(NovaSeq X/g)).toHaveLength(1); // repeated looks are silent
    expect(await daemon.stop()).toBe(0);
  });

  it('a run stopped on the instrument (RunCompletionStatus.xml) is converted and recorded aborted', async () => {
    const name = '240131_VH00456_17_AAAF3YHM5';
    const daemon = await startDaemon(p, await config({}));
    const dir = join(p.mount, name);
    await mkdir(dir);
    await writeFile(join(dir, 'RunInfo.xml'), '<RunInfo/>\n');
    await daemon.waitFor('waiting for CopyComplete.txt (NextSeq 1000/2000');
    const xml = '<?xml version="1.0"?>\n<RunCompletionStatus><CompletionStatus>UserEndedEarly</CompletionStatus></RunCompletionStatus>\n';
    await writeFile(join(dir, 'RunCompletionStatus.xml'), xml);
    await waitLive(p, [name], scaled(60_000));
    expect(await settledRun(name)).toMatchObject({
      state: 'aborted',
      completion: 'aborted',
      note: expect.stringContaining('UserEndedEarly'),
    });
    expect(daemon.output()).toMatch(/WARNING: .*aborted: RunCompletionStatus.xml says UserEndedEarly/);
    expect(await daemon.stop()).toBe(0);
  });

  it('a stalled run is reported once and, with onStall wait, not converted', async () => {
    const name = '20240131_LH00123_0050_A22ABCDLT9';
    const daemon = await startDaemon(p, await config({ staleAfterSeconds: 2, onStall: 'wait' }));
    const dir = join(p.mount, name);
    await mkdir(dir);
    await writeFile(join(dir, 'RunInfo.xml'), '<RunInfo/>\n');
    await daemon.waitFor(/WARNING: .*stalled: nothing written since/, scaled(30_000));
    await sleep(scaled(3000)); // several more looks
    expect(daemon.output().match(/stalled: nothing written since/g)).toHaveLength(1);
    expect((await datasetStates(p)).has(name)).toBe(false);
    expect(await runRecord(name)).toMatchObject({ state: 'stalled', note: expect.stringContaining('waiting for CopyComplete.txt') });
    expect(await daemon.stop()).toBe(0);
  });
});
