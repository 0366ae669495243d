/**
 * fault-injection's 'during' drill fires inside its step or not at all: a step shorter than
 * duringMs is not interrupted later, in another step (the drill is the evidence behind
 * docs/guarantees.md, so it must say truthfully where it struck).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import faultInjection from '../../plugins/fault-injection/index.js';
import { createHooks } from '../../src/core/hooks.js';
import { JobImpl, newRecord } from '../../src/core/job.js';
import { Journal, jobId } from '../../src/core/journal.js';
import { createLogger } from '../../src/core/logger.js';
import type { LogRecord, RootContext } from '../../src/core/types.js';
import { withRuns } from '../helpers/runs.js';

let stateDir: string;
/** Which step was running each time the drill's signal arrived. */
let struck: string[];
let running: string | undefined;
const onSignal = (): void => {
  struck.push(running ?? '(between steps)');
};

beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'zdc-fault-'));
  struck = [];
  running = undefined;
  process.on('SIGUSR2', onSignal);
});
afterEach(async () => {
  process.off('SIGUSR2', onSignal);
  await rm(stateDir, { recursive: true, force: true });
});

async function drill(killAt: string, duringMs: number) {
  const hooks = createHooks();
  const records: LogRecord[] = [];
  const log = createLogger([(r) => records.push(r)]);
  const root: RootContext = withRuns({ rootfs: 'tank/r', rootdir: '/tank/r', log, dryRun: false, stateDir }, hooks);
  const options = faultInjection.options!.parse({ killAt, when: 'during', duringMs, signal: 'SIGUSR2' });
  await faultInjection.apply(hooks, { options, root, log, dryRun: false, stateDir });
  const job = new JobImpl(root, newRecord(root, jobId(root.rootdir, 'd'), 'd'), new Journal(stateDir), new AbortController().signal, hooks);
  job.phase = 'swap';
  const step = (name: string, ms: number, fail = false): Promise<unknown> =>
    job.step(name, name, async () => {
      running = `swap/${name}`;
      try {
        await sleep(ms);
        if (fail) throw new Error(`${name} failed`);
      } finally {
        running = undefined;
      }
    });
  return { step, records };
}

describe("fault-injection 'during'", () => {
  it('strikes in the middle of its step when the step outlasts duringMs', async () => {
    const { step, records } = await drill('swap/move-aside', 50);
    await step('move-aside', 300);
    expect(struck).toEqual(['swap/move-aside']);
    expect(
      records.find((r) => r.message.startsWith('fault injection: sending SIGUSR2 to this process during swap/move-aside')),
    ).toMatchObject({ plugin: 'fault-injection', dir: 'd' });
  });

  it('never strikes later, in another step, when its step ended first', async () => {
    const { step, records } = await drill('swap/move-aside', 100);
    await step('move-aside', 5);
    await step('catch-up', 400);
    await sleep(100);
    expect(struck).toEqual([]);
    expect(records.some((r) => r.message.includes('fault injection: sending'))).toBe(false);
  });

  it('never strikes after its step threw (the rollback that follows runs undisturbed)', async () => {
    const { step } = await drill('swap/move-aside', 100);
    await expect(step('move-aside', 5, true)).rejects.toThrow('move-aside failed');
    await step('rollback-like', 400);
    expect(struck).toEqual([]);
  });
});
