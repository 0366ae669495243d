/**
 * Never destroy, revert or silently drop what users wrote (issue 9): once the new dataset is
 * live, it may hold the only copy of their data. Real pool, real processes and signals.
 */
import { chmod, lstat, mkdir, open, readFile, readlink, rm, rmdir, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cli, cliSpawn, createPool, datasets, fastPlugins, zfs, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree, type Entry } from '../helpers/tree.js';
import { helperPath, leftovers } from '../helpers/state.js';
import { run, writeNamedConfig } from './safety-helpers.js';

let p: TestPool;
let plain: string;

beforeAll(async () => {
  p = await createPool('live', 512);
  plain = await writeNamedConfig(p, 'plain.json', fastPlugins());
});
afterAll(async () => {
  await p?.destroy();
});

const dataset = async (name: string) => (await datasets(p.pool)).find((d) => d.name === `${p.pool}/${name}`);

/**
 * Waits until `name`'s dataset is mounted at its path (the job passed its commit point). With the
 * job's process given, a job that ends first fails the wait at once with what it printed.
 */
async function waitLiveAtPath(name: string, job?: ResultPromise, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let ended: { exitCode?: number; signal?: string; stdout: unknown; stderr: unknown } | undefined;
  void job?.then((r) => {
    ended = r;
  });
  for (;;) {
    const d = await dataset(name);
    if (d?.mounted === 'yes' && d.mountpoint === join(p.mount, name)) return;
    if (ended)
      throw new Error(
        `${name}: the job ended (exit ${ended.exitCode}, signal ${ended.signal}) before it went live:\n${String(ended.stderr)}${String(ended.stdout)}`,
      );
    if (Date.now() > deadline) throw new Error(`${name} never went live at its path (state: ${JSON.stringify(d)})`);
    await sleep(50);
  }
}

function withoutKey(tree: Map<string, Entry>, key: string): Map<string, Entry> {
  const copy = new Map(tree);
  copy.delete(key);
  return copy;
}

describe('recovery after the commit point never destroys or reverts the dataset', () => {
  /** Kill points after the commit: [killAt, when]. */
  const POINTS: [string, 'before' | 'after'][] = [
    ['swap/mount-in-place', 'before'],
    ['swap/mount-in-place', 'after'],
    ['swap/catch-up', 'after'],
    ['cleanup/catch-up', 'after'],
    ['cleanup/remove-original', 'before'],
    ['cleanup/remove-original', 'after'],
    ['publish', 'before'],
  ];

  it('SIGKILL at every step after the commit, the dataset unmounted, recover twice: every file users wrote survives', async () => {
    for (const [index, [killAt, when]] of POINTS.entries()) {
      const name = `live_${killAt.replace('/', '.')}_${when}`;
      const dir = join(p.mount, name);
      await makeTree(dir, 12, 2000 + index);
      const before = await describeTree(dir, { mtimes: true });
      const config = await writeNamedConfig(
        p,
        `live-kill-${index}.json`,
        fastPlugins({ more: [['fault-injection', { killAt, when, names: [name] }]] }),
      );
      const r = await run(['--config', config, 'handle', dir], p.stateDir);
      expect({ name, signal: r.signal }).toEqual({ name, signal: 'SIGKILL' });
      const ds = await dataset(name);
      expect({ name, state: ds?.state }).not.toEqual({ name, state: undefined });
      // A user writes into the live dataset, where it is live.
      const live = ds?.mounted === 'yes' && ds.mountpoint === dir;
      if (live) await writeFile(join(dir, 'written-after-swap'), `user data ${name}\n`);
      // Then the dataset is unmounted (zpool import -N, a failed mount at boot, an administrator).
      if (ds?.mounted === 'yes') await zfs('unmount', `${p.pool}/${name}`);
      // The administrator removes the empty directory that is in the way, as an earlier message would have said.
      await rmdir(dir).catch(() => undefined);
      for (const attempt of [1, 2]) {
        const rec = await run(['--config', plain, 'recover'], p.stateDir);
        expect({ name, attempt, exitCode: rec.exitCode, out: rec.stdout + rec.stderr }).toMatchObject({ name, attempt, exitCode: 0 });
        expect(rec.stdout + rec.stderr).not.toMatch(/rolled.back/);
      }
      expect(await dataset(name)).toMatchObject({ mounted: 'yes', mountpoint: dir, state: 'live' });
      const after = await describeTree(dir, { mtimes: true });
      if (live) {
        expect(await readFile(join(dir, 'written-after-swap'), 'utf8')).toBe(`user data ${name}\n`);
        expect({ name, tree: withoutKey(withoutKey(after, 'written-after-swap'), '.') }).toEqual({ name, tree: withoutKey(before, '.') });
      } else {
        expect({ name, tree: withoutKey(after, '.') }).toEqual({ name, tree: withoutKey(before, '.') });
      }
    }
    expect(await leftovers(p)).toEqual([]);
  });

  it('a rootdir given through a symlink is the same root: recover finishes a committed job, never destroys it', async () => {
    const link = join(p.work, 'root-link');
    await symlink(p.mount, link);
    const linked = join(p.work, 'linked.json');
    await writeFile(linked, JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: link, plugins: fastPlugins() }] }));
    const name = 'via-symlink';
    const dir = join(p.mount, name);
    await makeTree(dir, 8);
    const before = await describeTree(dir, { mtimes: true });
    const kill = join(p.work, 'linked-kill.json');
    await writeFile(
      kill,
      JSON.stringify({
        stateDir: p.stateDir,
        roots: [
          {
            rootfs: p.pool,
            rootdir: link,
            plugins: fastPlugins({ more: [['fault-injection', { killAt: 'cleanup/remove-original', when: 'before', names: [name] }]] }),
          },
        ],
      }),
    );
    const r = await run(['--config', kill, 'handle', join(link, name)], p.stateDir);
    expect(r.signal).toBe('SIGKILL');
    await writeFile(join(dir, 'user-file'), 'mine\n');
    const rec = await run(['--config', linked, 'recover'], p.stateDir);
    expect(rec.exitCode).toBe(0);
    expect(rec.stdout).toMatch(/recovered/);
    expect(await readFile(join(dir, 'user-file'), 'utf8')).toBe('mine\n');
    expect(withoutKey(withoutKey(await describeTree(dir, { mtimes: true }), 'user-file'), '.')).toEqual(withoutKey(before, '.'));
    expect(await dataset(name)).toMatchObject({ mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});

describe("the catch-up carries only the original's own changes", () => {
  it('five edits users make in the live dataset during the grace period are all kept', async () => {
    const name = 'edited';
    const dir = join(p.mount, name);
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'private.txt'), 'keep me private\n');
    await writeFile(join(dir, 'gone.txt'), 'to be deleted by the user\n');
    await writeFile(join(dir, 'restored.txt'), 'version 2\n');
    await writeFile(join(dir, 'sub', 'x'), 'x\n');
    await symlink('target-a', join(dir, 'link'));
    const config = await writeNamedConfig(p, 'edits.json', fastPlugins({ rsync: { graceSeconds: 4, maxGraceSeconds: 60 } }));
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      job.kill('SIGKILL');
    });
    await waitLiveAtPath(name, job);
    // In the live dataset, while the original waits out its grace period:
    await chmod(join(dir, 'private.txt'), 0o600);
    await chmod(join(dir, 'sub'), 0o700);
    await unlink(join(dir, 'link'));
    await symlink('target-b', join(dir, 'link'));
    await unlink(join(dir, 'gone.txt'));
    await writeFile(join(dir, 'restored.txt'), 'version 1, from the backup\n');
    await utimes(join(dir, 'restored.txt'), new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
    const r = await job;
    expect({ exitCode: r.exitCode, stderr: String(r.stderr).split('\n').slice(-3).join('\n') }).toMatchObject({ exitCode: 0 });
    expect(String(r.stderr)).toContain('converted into');
    expect(String(r.stderr)).not.toMatch(/late change\(s\) to the original were caught up/);
    expect((await lstat(join(dir, 'private.txt'))).mode & 0o777).toBe(0o600);
    expect((await lstat(join(dir, 'sub'))).mode & 0o777).toBe(0o700);
    expect(await readlink(join(dir, 'link'))).toBe('target-b');
    await expect(lstat(join(dir, 'gone.txt'))).rejects.toThrow(/ENOENT/);
    expect(await readFile(join(dir, 'restored.txt'), 'utf8')).toBe('version 1, from the backup\n');
    expect((await lstat(join(dir, 'restored.txt'))).mtime.toISOString()).toBe('2020-01-01T00:00:00.000Z');
    expect(await leftovers(p)).toEqual([]);
  });

  it('the same file changed in the original and in the dataset: both kept, the job incomplete, the conflict named', async () => {
    const name = 'both-sides';
    const dir = join(p.mount, name);
    await mkdir(dir);
    await writeFile(join(dir, 'shared.txt'), 'first line\n');
    await writeFile(join(dir, 'other.txt'), 'untouched\n');
    // A writer keeps shared.txt open in the original across the swap (old NFS handle, open descriptor).
    const writer = execa(
      process.execPath,
      [
        '-e',
        `
      const fs = require('fs');
      const fd = fs.openSync(process.argv[1], 'a');
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => { fs.writeSync(fd, 'written in the original after the swap\\n'); fs.closeSync(fd); process.exit(0); });
    `,
        join(dir, 'shared.txt'),
      ],
      { cwd: '/', stdin: 'pipe', reject: false },
    );
    onTestFinished(() => {
      writer.kill('SIGKILL');
    });
    await new Promise<void>((resolve) => writer.stdout!.once('data', () => resolve()));
    const config = await writeNamedConfig(
      p,
      'both.json',
      fastPlugins({ quiet: { checkOpenFiles: false }, rsync: { graceSeconds: 2, maxGraceSeconds: 60 } }),
    );
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      job.kill('SIGKILL');
    });
    await waitLiveAtPath(name, job);
    await writeFile(join(dir, 'shared.txt'), 'rewritten by a user in the dataset\n');
    writer.stdin!.write('go\n');
    await writer;
    const r = await job;
    expect(r.exitCode).toBe(1);
    const last = String(r.stderr).trim().split('\n').at(-1)!;
    expect(last).toMatch(
      /changed both in the original and in the dataset \(shared\.txt: .*\); neither was overwritten, and the original is kept at /,
    );
    // Both versions exist: the user's in the dataset, the original's in the kept original.
    expect(await readFile(join(dir, 'shared.txt'), 'utf8')).toBe('rewritten by a user in the dataset\n');
    const aside = helperPath(p, name, 'orig');
    expect(await readFile(join(aside, 'shared.txt'), 'utf8')).toBe('first line\nwritten in the original after the swap\n');
    const status = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
    const jobs = (JSON.parse(status.stdout) as { roots: { jobs: { name: string; status: string; error?: string }[] }[] }).roots[0]!.jobs;
    expect(jobs.find((j) => j.name === name)).toMatchObject({ status: 'incomplete' });
    expect(jobs.find((j) => j.name === name)!.error).toMatch(/shared\.txt/);
    // Settled as the message says: the version wanted is in the dataset; delete it from the kept original; recover.
    await rm(join(aside, 'shared.txt'));
    const rec = await run(['--config', plain, 'recover'], p.stateDir);
    expect(rec.exitCode).toBe(0);
    expect(await readFile(join(dir, 'shared.txt'), 'utf8')).toBe('rewritten by a user in the dataset\n');
    expect(await readFile(join(dir, 'other.txt'), 'utf8')).toBe('untouched\n');
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('locks are never taken from a living process', () => {
  it('a handle stopped (SIGSTOP) in its grace period keeps its lock; recover leaves the job alone; on SIGCONT it finishes and tells the truth', async () => {
    const name = 'stopped';
    const dir = join(p.mount, name);
    await makeTree(dir, 10);
    const before = await describeTree(dir, { mtimes: true });
    const config = await writeNamedConfig(p, 'stopped.json', fastPlugins({ rsync: { graceSeconds: 3, maxGraceSeconds: 60 } }));
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      job.kill('SIGCONT');
      job.kill('SIGKILL');
    });
    await waitLiveAtPath(name, job);
    job.kill('SIGSTOP');
    // Far longer than any staleness period the old locks had.
    await sleep(4000);
    const rec = await run(['--config', plain, 'recover'], p.stateDir);
    expect(rec.exitCode).toBe(0);
    expect(rec.stdout).toMatch(/busy/);
    expect(await lstat(helperPath(p, name, 'orig')).then(() => true)).toBe(true);
    job.kill('SIGCONT');
    const r = await job;
    expect(r.exitCode).toBe(0);
    expect(String(r.stderr)).toContain('converted into');
    expect(String(r.stderr)).not.toMatch(/the original is kept/);
    expect(withoutKey(await describeTree(dir, { mtimes: true }), '.')).toEqual(withoutKey(before, '.'));
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('limits', () => {
  it('quota plus a writer appending across the swap: the quota is in force from the commit, every line caught up', async () => {
    const name = 'quota-writer';
    const dir = join(p.mount, name);
    await makeTree(dir, 8, 100_000);
    const file = join(dir, 'growing.log');
    const writer = execa(
      process.execPath,
      [
        '-e',
        `
      const fs = require('fs');
      const fd = fs.openSync(process.argv[1], 'a');
      let n = 0;
      const timer = setInterval(() => { fs.writeSync(fd, 'x'.repeat(4095) + '\\n'); n++; }, 20);
      process.on('SIGTERM', () => { clearInterval(timer); fs.closeSync(fd); process.stdout.write(String(n)); process.exit(0); });
      process.stdout.write('ready\\n');
    `,
        file,
      ],
      { cwd: '/', reject: false },
    );
    onTestFinished(() => {
      writer.kill('SIGKILL');
    });
    await new Promise<void>((resolve) => writer.stdout!.once('data', () => resolve()));
    // No quiet-wait: a file appended every 20 ms is rightly never quiet (the job would be deferred);
    // this test is about what happens from the copy on, with the writer running throughout.
    const config = await writeNamedConfig(p, 'quota-writer.json', [
      'name-filter',
      ['zfs', { properties: { quota: '64M' } }],
      ['rsync', { graceSeconds: 2, maxGraceSeconds: 60 }],
    ]);
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      job.kill('SIGKILL');
    });
    await waitLiveAtPath(name, job);
    // Set at the commit, before the mount (issue 19): holding the original never keeps it unlimited.
    expect((await zfs('get', '-H', '-o', 'value', 'quota', `${p.pool}/${name}`)).trim()).toBe('64M');
    await sleep(2000);
    writer.kill('SIGTERM');
    const written = Number(String((await writer).stdout).replace('ready\n', ''));
    const r = await job;
    expect(r.exitCode).toBe(0);
    expect((await readFile(file, 'utf8')).split('\n').filter(Boolean).length).toBe(written);
    expect((await zfs('get', '-H', '-o', 'value', 'quota', `${p.pool}/${name}`)).trim()).toBe('64M');
    // Users can still write.
    await writeFile(join(dir, 'after.bin'), Buffer.alloc(1_000_000));
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('legacy runs recover their root', () => {
  const legacy = (config: string, name: string): Promise<Awaited<ReturnType<typeof run>>> =>
    run(['--config', config, p.pool, p.mount, name, 'IN_CREATE,IN_ISDIR'], p.stateDir);

  it('a 4-argument run killed in its grace period is finished by the next run for another directory, and by recover without a config', async () => {
    for (const n of ['legacy-a', 'legacy-b', 'legacy-c']) await makeTree(join(p.mount, n), 6);
    const treeA = await describeTree(join(p.mount, 'legacy-a'), { mtimes: true });
    const treeC = await describeTree(join(p.mount, 'legacy-c'), { mtimes: true });
    const killA = await writeNamedConfig(
      p,
      'legacy-kill-a.json',
      fastPlugins({ more: [['fault-injection', { killAt: 'cleanup/remove-original', when: 'before', names: ['legacy-a'] }]] }),
    );
    expect((await legacy(killA, 'legacy-a')).signal).toBe('SIGKILL');
    const next = await legacy(plain, 'legacy-b');
    expect(next.exitCode).toBe(0);
    expect(next.stderr).toMatch(/\[legacy-a\] recovery: finished an interrupted job/);
    expect(await dataset('legacy-a')).toMatchObject({ state: 'live', mounted: 'yes' });
    expect(withoutKey(await describeTree(join(p.mount, 'legacy-a'), { mtimes: true }), '.')).toEqual(withoutKey(treeA, '.'));

    const killC = await writeNamedConfig(
      p,
      'legacy-kill-c.json',
      fastPlugins({ more: [['fault-injection', { killAt: 'cleanup/remove-original', when: 'before', names: ['legacy-c'] }]] }),
    );
    expect((await legacy(killC, 'legacy-c')).signal).toBe('SIGKILL');
    // No config at all (a site that only has the original incron line): the journal says what to finish.
    const rec = await run(['recover'], p.stateDir);
    expect({ exitCode: rec.exitCode, out: rec.stdout + rec.stderr }).toMatchObject({ exitCode: 0 });
    expect(rec.stdout).toMatch(/recovered .*legacy-c/);
    expect(await dataset('legacy-c')).toMatchObject({ state: 'live', mounted: 'yes' });
    expect(withoutKey(await describeTree(join(p.mount, 'legacy-c'), { mtimes: true }), '.')).toEqual(withoutKey(treeC, '.'));
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('names inside a directory are bytes, not text', () => {
  it('names that are not UTF-8 are copied, caught up after the swap and verified byte for byte', async () => {
    const name = 'bytes';
    const dir = join(p.mount, name);
    await mkdir(join(dir, 'sub'), { recursive: true });
    const latin1 = Buffer.concat([Buffer.from(`${dir}/caf`), Buffer.from([0xe9])]);
    await writeFile(latin1, 'first line\n');
    await writeFile(Buffer.concat([Buffer.from(`${dir}/sub/`), Buffer.from([0xff, 0xfe])]), 'x');
    await symlink(Buffer.from([0x63, 0x61, 0x66, 0xe9]), Buffer.concat([Buffer.from(`${dir}/link`), Buffer.from([0xe9])]));
    // Kept open across the swap and written after it: the catch-up copies it by its raw name.
    const held = await open(latin1, 'a');
    onTestFinished(() => held.close().catch(() => undefined));
    const config = await writeNamedConfig(
      p,
      'bytes.json',
      fastPlugins({ quiet: { checkOpenFiles: false }, rsync: { graceSeconds: 2, maxGraceSeconds: 60 } }),
    );
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      job.kill('SIGKILL');
    });
    await waitLiveAtPath(name, job);
    await held.write('second line, after the swap\n');
    await held.close();
    const r = await job;
    expect({ exitCode: r.exitCode, last: String(r.stderr).trim().split('\n').at(-1) }).toMatchObject({ exitCode: 0 });
    expect(await readFile(latin1, 'utf8')).toBe('first line\nsecond line, after the swap\n');
    expect((await readFile(Buffer.concat([Buffer.from(`${dir}/sub/`), Buffer.from([0xff, 0xfe])]))).toString()).toBe('x');
    expect(await readlink(Buffer.concat([Buffer.from(`${dir}/link`), Buffer.from([0xe9])]), { encoding: 'buffer' })).toEqual(
      Buffer.from([0x63, 0x61, 0x66, 0xe9]),
    );
    expect(await dataset(name)).toMatchObject({ mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});
