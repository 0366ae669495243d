/**
 * Never lose a byte, part 1: the process dies (SIGKILL) at every step boundary and in the
 * middle of the copy; `recover` then leaves every file at its original path, with its
 * content, and nothing of the job behind; `handle` converts what was rolled back.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree, type Entry } from '../helpers/tree.js';
import { scaled } from '../helpers/time.js';
import { cliSpawn } from '../helpers/zfs.js';
import { leftovers, processesMatching, run, stagingPath, writeNamedConfig } from './safety-helpers.js';

let p: TestPool;
let plain: string;

beforeAll(async () => {
  p = await createPool('crash', 512);
  plain = await writeNamedConfig(p, 'plain.json', fastPlugins());
});
afterAll(async () => {
  await p?.destroy();
});

/** Every point the tests kill the process at: [killAt, when]. */
const POINTS: [string, 'before' | 'after'][] = [
  ['provision', 'before'],
  ['provision', 'after'],
  ['provision/create', 'after'],
  ['migrate/copy', 'before'],
  ['migrate/copy', 'after'],
  ['swap/mark', 'before'],
  ['swap/mark', 'after'],
  ['swap/move-aside', 'before'],
  ['swap/move-aside', 'after'],
  ['swap/mount-in-place', 'before'],
  ['swap/mount-in-place', 'after'],
  ['swap', 'after'],
  ['cleanup/remove-original', 'before'],
  ['cleanup/remove-original', 'after'],
  ['cleanup', 'after'],
  ['publish', 'before'],
];

const dirName = (killAt: string, when: string): string => `k_${killAt.replace('/', '.')}_${when}`;

/** Runs `make` the first time a test asks for it; every later ask gets the same result. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

/**
 * One scenario in steps: the kills, then one recover of them all, then handle. Each test asks for
 * the steps it needs (each runs once), so that every test also runs on its own (`-t`).
 */
describe('SIGKILL at every step, then recover', () => {
  const before = new Map<string, Map<string, Entry>>();
  const dirTimes = new Map<string, number>();

  const killedAtPoints = once(async () => {
    const results: { name: string; signal: string | undefined; stderr: string }[] = [];
    for (const [index, [killAt, when]] of POINTS.entries()) {
      const name = dirName(killAt, when);
      const dir = join(p.mount, name);
      await makeTree(dir, 12, 3000 + index);
      before.set(name, await describeTree(dir, { mtimes: true }));
      // Aimed at this job only: every run first recovers the root's earlier jobs, which must not die.
      const config = await writeNamedConfig(
        p,
        `kill-${index}.json`,
        fastPlugins({ more: [['fault-injection', { killAt, when, names: [name] }]] }),
      );
      const r = await run(['--config', config, 'handle', dir], p.stateDir);
      results.push({ name, signal: r.signal, stderr: r.stderr });
    }
    return results;
  });

  const killedMidCopy = once(async () => {
    const name = 'k_mid-copy';
    const dir = join(p.mount, name);
    await makeTree(dir, 1500, 40_000);
    before.set(name, await describeTree(dir, { mtimes: true }));
    // Killed in the middle of rsync's copy: without the parallel copy, which would have copied
    // every file before rsync starts.
    const rsyncOnly = await writeNamedConfig(p, 'rsync-only.json', fastPlugins({ rsync: { parallelCopy: false } }));
    const child = cliSpawn(['--config', rsyncOnly, 'handle', dir], { stateDir: p.stateDir });
    const staging = stagingPath(p, name);
    let rsyncs: number[] = [];
    for (const deadline = Date.now() + scaled(10_000); rsyncs.length === 0 && Date.now() < deadline;) {
      rsyncs = await processesMatching('rsync', `${staging}/`);
      if (rsyncs.length === 0) await sleep(25);
    }
    await sleep(50); // some of it copied, not all
    child.kill('SIGKILL');
    for (const pid of await processesMatching('rsync', `${staging}/`)) process.kill(pid, 'SIGKILL');
    const r = await child;
    // Really in the middle: the staging dataset holds some but not all of the files.
    const copied = (await Promise.all(['d0', 'd1', 'd2', 'd3'].map((d) => readdir(join(staging, d)).catch(() => [] as string[])))).flat()
      .length;
    return { rsyncs: rsyncs.length, signal: r.signal, copied };
  });

  const killedDuringCopy = once(async () => {
    const name = 'k_during-copy';
    const dir = join(p.mount, name);
    await makeTree(dir, 800, 40_000);
    before.set(name, await describeTree(dir, { mtimes: true }));
    const config = await writeNamedConfig(
      p,
      'during.json',
      fastPlugins({ more: [['fault-injection', { killAt: 'migrate/copy', when: 'during', duringMs: 200, names: [name] }]] }),
    );
    return run(['--config', config, 'handle', dir], p.stateDir);
  });

  const killedDuringRemove = once(async () => {
    const name = 'k_during-remove';
    const dir = join(p.mount, name);
    await makeTree(dir, 2000, 1000);
    before.set(name, await describeTree(dir, { mtimes: true }));
    for (const sub of ['', 'd0', 'd1', 'd2', 'd3']) dirTimes.set(join(name, sub), (await lstat(join(dir, sub))).mtimeMs);
    // Killed once the removal has visibly begun: part of the original is gone, part is left.
    const child = cliSpawn(['--config', plain, 'handle', dir], { stateDir: p.stateDir });
    const aside = stagingPath(p, name, 'orig');
    // Entries left in the aside original, or undefined before it is there. Read only once it is
    // there: a count taken across the move aside (some directories read before it, some after)
    // would pass for a removal under way. A directory gone once it is there was removed whole.
    const count = async (): Promise<number | undefined> => {
      if ((await lstat(aside).catch(() => undefined)) === undefined) return undefined;
      const lists = await Promise.all(['d0', 'd1', 'd2', 'd3'].map((d) => readdir(join(aside, d)).catch(() => [] as string[])));
      return lists.flat().length;
    };
    let exited = false;
    void child.then(
      () => (exited = true),
      () => (exited = true),
    );
    // Polled until the removal is seen under way (or the job ended: the test then fails below).
    for (const deadline = Date.now() + scaled(60_000); !exited && Date.now() < deadline; await sleep(5)) {
      const left = await count();
      if (left !== undefined && left > 0 && left < 1900) break;
    }
    child.kill('SIGKILL');
    const r = await child;
    return { signal: r.signal, left: (await count()) ?? 0 };
  });

  /** Every kill above, then one recover of them all. */
  const recovered = once(async () => {
    await killedAtPoints();
    await killedMidCopy();
    await killedDuringCopy();
    await killedDuringRemove();
    return run(['--config', plain, 'recover'], p.stateDir);
  });

  it('dies where it is told to', async () => {
    for (const { name, signal, stderr } of await killedAtPoints()) {
      expect({ name, signal, stderr }).toMatchObject({ name, signal: 'SIGKILL' });
      expect(stderr).toContain(`fault injection: sending SIGKILL`);
    }
  });

  it('dies in the middle of the copy (the node process and its rsync killed together)', async () => {
    const { rsyncs, signal, copied } = await killedMidCopy();
    expect(rsyncs).toBeGreaterThan(0);
    expect(signal).toBe('SIGKILL');
    expect(copied).toBeLessThan(1500);
  });

  it('dies in the middle of the copy by fault injection (rsync left running, as after a real crash)', async () => {
    expect((await killedDuringCopy()).signal).toBe('SIGKILL');
  });

  it('dies in the middle of removing the original (after the verification)', async () => {
    const { signal, left } = await killedDuringRemove();
    expect(signal).toBe('SIGKILL');
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(2000);
  });

  it('recover leaves every file at its original path and nothing of the jobs behind', async () => {
    const r = await recovered();
    expect(r.stdout + r.stderr).not.toMatch(/^busy|failed/m);
    expect(r.exitCode).toBe(0);
    for (const [name, tree] of before) {
      expect({ name, tree: await describeTree(join(p.mount, name), { mtimes: true }) }).toEqual({ name, tree });
    }
    expect(await leftovers(p)).toEqual([]);
    // What was converted is live at its path; what was rolled back is a plain directory again.
    const rows = await datasets(p.pool);
    for (const name of before.keys()) {
      const row = rows.find((d) => d.name === `${p.pool}/${name}`);
      if (row) expect(row).toMatchObject({ mountpoint: join(p.mount, name), mounted: 'yes', state: 'live' });
      else expect((await lstat(join(p.mount, name))).dev).toBe((await lstat(p.mount)).dev);
    }
    // The kills after the point of no return were finished, the ones before it undone.
    const live = new Set(rows.map((d) => d.name.slice(p.pool.length + 1)));
    expect(live.has(dirName('swap/mount-in-place', 'after'))).toBe(true);
    expect(live.has(dirName('publish', 'before'))).toBe(true);
    expect(live.has(dirName('swap/move-aside', 'after'))).toBe(false);
    expect(live.has('k_mid-copy')).toBe(false);
    // Finishing an interrupted removal did not copy the half-removed original's directory times.
    for (const [rel, mtime] of dirTimes) expect({ rel, mtime: (await lstat(join(p.mount, rel))).mtimeMs }).toEqual({ rel, mtime });
  });

  it('handle then converts the ones that were rolled back', async () => {
    await recovered();
    for (const [name, tree] of before) {
      const r = await run(['--config', plain, 'handle', join(p.mount, name)], p.stateDir);
      expect({ name, exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ name, exitCode: 0 });
      expect(r.stderr).toMatch(/converted into|already a filesystem/);
      expect({ name, tree: await describeTree(join(p.mount, name), { mtimes: true }) }).toEqual({ name, tree });
    }
    const rows = await datasets(p.pool);
    for (const name of before.keys()) {
      expect(rows).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: join(p.mount, name), mounted: 'yes', state: 'live' });
    }
    expect(await leftovers(p)).toEqual([]);
  });
});
