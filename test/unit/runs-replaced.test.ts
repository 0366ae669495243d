/**
 * A run folder replaced by another of its name (removed and made again, or renamed away and
 * another made) between two looks: the engine and the completion plugin, real, in a temp root.
 * The new folder is a new run: the old one's completion is not its own.
 */
import { mkdir, mkdtemp, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootEngine } from '../../src/core/engine.js';
import type { LogRecord, RunEventName } from '../../src/core/index.js';
import completion from '../../plugins/completion/index.js';

let tmp: string;
beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'zdc-replaced-')));
  await mkdir(join(tmp, 'root'));
  await mkdir(join(tmp, 'state'), { mode: 0o700 });
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** An engine with the completion plugin (marker DONE, no age), and after it a wait tap that always defers (a writer still busy). */
async function engine(): Promise<{ e: RootEngine; events: RunEventName[] }> {
  const records: LogRecord[] = [];
  const e = new RootEngine({
    rootfs: 'tank/root',
    rootdir: join(tmp, 'root'),
    stateDir: join(tmp, 'state'),
    dryRun: false,
    sinks: [(r) => records.push(r)],
  });
  const options = completion.options!.parse({ preset: 'marker', markerAgeSeconds: 0 });
  await completion.apply(e.hooks, {
    options,
    root: { rootfs: 'tank/root', rootdir: join(tmp, 'root') },
    log: e.context.log,
    dryRun: false,
    stateDir: join(tmp, 'state'),
  });
  e.hooks.wait.tapPromise('busy', async () => ({ defer: 'a file is open' }));
  const events: RunEventName[] = [];
  e.hooks.run.tap('test', (event) => void events.push(event.event));
  return { e, events };
}

describe('a run folder replaced while it waits', () => {
  it('the new folder is a new run: waiting, not the old one complete; its own completion told', async () => {
    const { e, events } = await engine();
    const run = join(tmp, 'root', 'r1');
    await mkdir(run);
    await writeFile(join(run, 'DONE'), '');
    expect(await e.handle('r1')).toMatchObject({ kind: 'deferred' });
    expect(await e.context.runs.get('r1')).toMatchObject({ state: 'complete' });
    await rename(run, join(tmp, 'root', 'r1.old'));
    await mkdir(run);
    expect(await e.handle('r1')).toMatchObject({ kind: 'waiting' });
    const now = await e.context.runs.get('r1');
    expect(now).toMatchObject({ state: 'waiting' });
    expect(now?.completion).toBeUndefined();
    await writeFile(join(run, 'DONE'), '');
    expect(await e.handle('r1')).toMatchObject({ kind: 'deferred' });
    expect(events).toEqual(['run.detected', 'run.complete', 'run.detected', 'run.complete']);
  });
});
