/**
 * The quiet-period waiter (src/util/quiet.ts) on real directories: a quiet tree, a tree written
 * to until it settles, one that never settles (the deadline), a stop, a process holding it.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { waitQuiet, type QuietOptions } from '../../src/util/quiet.js';
import { openDir, type DirRef } from '../../src/util/safefs/index.js';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'quiet-'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A fresh tree with a file and a subdirectory, opened. */
async function tree(name: string): Promise<{ path: string; dir: DirRef }> {
  const path = join(base, name);
  await mkdir(join(path, 'sub'), { recursive: true });
  await writeFile(join(path, 'a.txt'), 'a');
  await writeFile(join(path, 'sub', 'b.txt'), 'bb');
  const dir = await openDir(path);
  onTestFinished(() => dir.close());
  return { path, dir };
}

/** Writes a new file into `dir` every 50 ms until stopped. */
function writer(dir: string): { stop: () => Promise<void> } {
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      await writeFile(join(dir, `w${i}`), String(i));
      await sleep(50);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const options = (over: Partial<QuietOptions> = {}): QuietOptions => ({
  quietMs: 300,
  deadline: Date.now() + 30_000,
  signal: new AbortController().signal,
  ...over,
});

describe('waitQuiet', () => {
  it('finds a quiet tree quiet, and tells what its walks saw', async () => {
    const { dir } = await tree('still');
    const looks: { files: number; bytes: number }[] = [];
    const r = await waitQuiet(dir, options({ onLook: (l) => looks.push({ files: l.files, bytes: l.bytes }) }));
    expect(r).toEqual({ quiet: true, changes: 0 });
    expect(looks[0]).toEqual({ files: 2, bytes: 3 });
  });

  it('waits until a tree being written to settles, counting the changes', async () => {
    const { path, dir } = await tree('settling');
    const w = writer(join(path, 'sub'));
    const ticks: number[] = [];
    const waiting = waitQuiet(dir, options({ onTick: (quietFor) => ticks.push(quietFor) }));
    await sleep(1000);
    await w.stop();
    const r = await waiting;
    expect(r.quiet).toBe(true);
    expect(r.changes).toBeGreaterThan(0);
    expect(ticks.length).toBeGreaterThan(0);
  });

  it('sees changes through walks alone without inotify', async () => {
    const { path, dir } = await tree('unwatched');
    const w = writer(path);
    const changed: boolean[] = [];
    const waiting = waitQuiet(dir, options({ inotify: false, holders: false, onHolders: (_h, c) => changed.push(c) }));
    await sleep(1500);
    await w.stop();
    const r = await waiting;
    expect(r.quiet).toBe(true);
    expect(changed).toContain(true);
  });

  it('gives up at the deadline while the tree keeps changing', async () => {
    const { path, dir } = await tree('restless');
    const w = writer(path);
    onTestFinished(() => w.stop());
    const r = await waitQuiet(dir, options({ quietMs: 60_000, deadline: Date.now() + 1500 }));
    expect(r).toMatchObject({ quiet: false, stopped: false, holders: [], busy: '' });
  });

  it('returns at once, stopped, when the signal aborts', async () => {
    const { path, dir } = await tree('stopped');
    const w = writer(path);
    onTestFinished(() => w.stop());
    const stop = new AbortController();
    const waiting = waitQuiet(dir, options({ quietMs: 60_000, signal: stop.signal }));
    await sleep(500);
    stop.abort();
    expect(await waiting).toMatchObject({ quiet: false, stopped: true });
  });

  it('without a quiet period, a change does not matter', async () => {
    const { path, dir } = await tree('no-period');
    const w = writer(path);
    onTestFinished(() => w.stop());
    expect(await waitQuiet(dir, options({ quietMs: 0 }))).toMatchObject({ quiet: true });
  });

  it('waits while a process holds the tree, and names it', async () => {
    const { path, dir } = await tree('held');
    const sleeper = execa('sleep', ['30'], { cwd: join(path, 'sub'), reject: false });
    onTestFinished(() => void sleeper.kill('SIGKILL'));
    await sleep(200);
    const seen: string[] = [];
    const r = await waitQuiet(
      dir,
      options({ quietMs: 200, deadline: Date.now() + 2000, onHolders: (h, changed) => !changed && seen.push(...h.map((x) => x.command)) }),
    );
    expect(r).toMatchObject({ quiet: false, stopped: false });
    expect(r.quiet === false && r.busy).toMatch(new RegExp(`sleep\\[${sleeper.pid}\\]`));
    expect(seen).toContain('sleep');
    // Holders not asked about: quiet.
    expect(await waitQuiet(dir, options({ quietMs: 200, holders: false }))).toMatchObject({ quiet: true });
    sleeper.kill('SIGKILL');
    await sleeper;
    expect(await waitQuiet(dir, options({ quietMs: 200 }))).toMatchObject({ quiet: true });
  });
});
