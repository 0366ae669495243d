/**
 * cloneTree on an ordinary filesystem (here copy_file_range copies instead of sharing blocks,
 * which changes nothing for correctness): afterwards rsync -aHAX sends no file data again, the
 * verification passes, hard links stay hard links, and a file changed after its clone is sent.
 */
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cloneTree, PROBE_PREFIX, probeBlockCloning, removeStaleProbes } from '../../plugins/rsync/clone.js';
import { copyFilesFirst, describeCopyPath, type BlockCloningSetting, type CopyStageOptions } from '../../plugins/rsync/parallel-copy.js';
import { openDir, walkDirs, type Job } from '../../src/index.js';
import { verifyTree } from '../helpers/verify.js';

let work: string;
let src: string;
let dst: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'zdc-clone-'));
  src = join(work, 'src');
  dst = join(work, 'dst');
  await mkdir(dst);
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function rsync(...extra: string[]): Promise<string[]> {
  const r = await execa('rsync', ['-aHAX', '--numeric-ids', '--itemize-changes', ...extra, '--', `${src}/`, `${dst}/`]);
  return r.stdout.split('\n').filter(Boolean);
}

async function richTree(): Promise<void> {
  await mkdir(join(src, 'a', 'b', 'c'), { recursive: true });
  for (let i = 0; i < 40; i++) await writeFile(join(src, 'a', `f${i}`), Buffer.alloc(1000 + i * 517, i));
  await writeFile(join(src, 'a', 'b', 'c', 'deep'), 'deep\n');
  await writeFile(join(src, 'empty'), '');
  await writeFile(join(src, 'group'), 'one file, three names\n');
  await link(join(src, 'group'), join(src, 'a', 'group 2'));
  await link(join(src, 'group'), join(src, 'a', 'b', 'group 3'));
  await symlink('a/f1', join(src, 'link'));
  await symlink('/nonexistent', join(src, 'dangling'));
  await execa('mkfifo', [join(src, 'fifo')]);
  // a name with a newline and a leading dash
  await writeFile(join(src, '-n\name'), 'newline\n');
  await writeFile(join(src, 'setuid'), 'x');
  await chmod(join(src, 'setuid'), 0o4750);
  // times with sub-millisecond parts right at the edges
  await execa('touch', ['-m', '-d', '@1700000000.999999900', join(src, 'a', 'f0')]);
  await utimes(join(src, 'a', 'f1'), 1_600_000_000, 1_600_000_000);
}

describe('cloneTree', () => {
  it.each(['kernel', 'userspace'] as const)(
    'copies the files (%s) so that rsync -aHAX sends no data again, and the copy verifies',
    async (data) => {
      await richTree();
      const result = await cloneTree(src, dst, new AbortController().signal, { data, concurrency: 16 });
      // 40 f*, deep, empty, group (its two other names are links), the odd name, setuid; but a/f0,
      // whose time is 100 ns before a millisecond's end, is left to rsync (see timeSurvivesClone)
      expect(result).toMatchObject({ files: 44, links: 2, directories: 3, skipped: 1 });
      const lines = await rsync();
      expect(lines.filter((l) => l.startsWith('>f')).map((l) => l.slice(12))).toEqual(['a/f0']);
      expect(lines.filter((l) => /^(cL|cS|cD|hf)/.test(l)).length).toBeGreaterThanOrEqual(3);
      const v = await verifyTree(src, dst, { content: true });
      expect(v.differences).toEqual([]);
      const [g1, g2, g3] = await Promise.all(['group', 'a/group 2', 'a/b/group 3'].map((n) => lstat(join(dst, n))));
      expect(g2!.ino).toBe(g1!.ino);
      expect(g3!.ino).toBe(g1!.ino);
      expect(g1!.nlink).toBe(3);
      expect((await lstat(join(dst, 'setuid'))).mode & 0o7777).toBe(0o4750);
      // a clone's time is the original's to the microsecond
      await execa('touch', ['-m', '-d', '@1700000000.123456789', join(src, 'a', 'f2')]);
      await rm(join(dst, 'a', 'f2'));
      await cloneTree(src, dst, new AbortController().signal);
      // The same microsecond (Node 20's libuv sets whole microseconds; Node 22 and 24 pass the double on, to the nanosecond it rounds to).
      expect((await lstat(join(dst, 'a', 'f2'), { bigint: true })).mtimeNs / 1000n).toBe(1_700_000_000_123_456n);
    },
  );

  it('leaves what is already in the target alone, for rsync to fix', async () => {
    await richTree();
    await mkdir(join(dst, 'a'));
    await writeFile(join(dst, 'a', 'f3'), 'stale partial copy');
    await symlink('/etc/passwd', join(dst, 'a', 'f4'));
    const result = await cloneTree(src, dst, new AbortController().signal);
    expect(result.skipped).toBe(3); // a/f3, a/f4, and a/f0 for its time
    expect(await readFile(join(dst, 'a', 'f3'), 'utf8')).toBe('stale partial copy');
    const sent = (await rsync()).filter((l) => l.startsWith('>f')).map((l) => l.slice(12));
    expect(sent.sort()).toEqual(['a/f0', 'a/f3', 'a/f4']);
    expect((await verifyTree(src, dst, { content: true })).differences).toEqual([]);
  });

  it('a file changed after its clone has a newer time and is sent again', async () => {
    await richTree();
    await cloneTree(src, dst, new AbortController().signal);
    const before = await lstat(join(src, 'a', 'f5'));
    const same = Buffer.alloc(before.size, 0x7a);
    await writeFile(join(src, 'a', 'f5'), same); // same size, new content, new mtime
    await utimes(join(src, 'a', 'f5'), before.atime, new Date(before.mtimeMs + 2000));
    const sent = (await rsync()).filter((l) => l.startsWith('>f')).map((l) => l.slice(12));
    expect(sent.sort()).toEqual(['a/f0', 'a/f5']);
    expect(await readFile(join(dst, 'a', 'f5'))).toEqual(same);
  });

  it('handles names that are not UTF-8 as bytes', async () => {
    const odd = (dir: string, ...bytes: number[]): Buffer => Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(bytes)]);
    await mkdir(src);
    await mkdir(odd(src, 0x64, 0xe9));
    await writeFile(Buffer.concat([odd(src, 0x64, 0xe9), Buffer.from('/'), Buffer.from([0x66, 0xff, 0xfe])]), 'latin junk\n');
    const r = await cloneTree(src, dst, new AbortController().signal);
    expect(r).toMatchObject({ files: 1, directories: 1, skipped: 0 });
    expect(await readFile(Buffer.concat([odd(dst, 0x64, 0xe9), Buffer.from('/'), Buffer.from([0x66, 0xff, 0xfe])]), 'utf8')).toBe(
      'latin junk\n',
    );
    expect((await rsync()).filter((l) => l.startsWith('>f'))).toEqual([]);
  });

  it('does not follow a symlink planted where a directory was, nor copy another filesystem', async () => {
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'f'), 'f');
    await symlink('/etc', join(src, 'etc-link'));
    const r = await cloneTree(src, dst, new AbortController().signal);
    expect(r.files).toBe(1);
    await expect(lstat(join(dst, 'etc-link'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it("reads by descriptor: the original's path replaced by a symlink to another tree changes nothing it copies", async () => {
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'sub', 'mine'), "the user's own\n");
    const secret = join(work, 'secret');
    await mkdir(join(secret, 'sub'), { recursive: true });
    await writeFile(join(secret, 'sub', 'mine'), 'SECRET\n');
    await writeFile(join(secret, 'other'), 'SECRET\n');
    const pinned = await openDir(src);
    try {
      // After the directory was identified and opened, its owner moves it and plants a symlink.
      await rename(src, `${src}.moved`);
      await symlink(secret, src);
      const r = await cloneTree(pinned, dst, new AbortController().signal);
      expect(r).toMatchObject({ files: 1, directories: 1, skipped: 0 });
    } finally {
      await pinned.close();
    }
    expect(await readFile(join(dst, 'sub', 'mine'), 'utf8')).toBe("the user's own\n");
    await expect(lstat(join(dst, 'other'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a FIFO, a socket and a symlink to a file are left to rsync, and nothing blocks', async () => {
    await mkdir(src);
    await execa('mkfifo', [join(src, 'fifo')]);
    await writeFile(join(work, 'outside'), 'SECRET\n');
    await symlink(join(work, 'outside'), join(src, 'to-outside'));
    await writeFile(join(src, 'plain'), 'plain\n');
    const r = await cloneTree(src, dst, new AbortController().signal);
    expect(r).toMatchObject({ files: 1, skipped: 0 });
    expect(await readdir(dst)).toEqual(['plain']);
  });

  it('stops when its signal is aborted', async () => {
    await richTree();
    const ac = new AbortController();
    ac.abort(new Error('stopped for the test'));
    await expect(cloneTree(src, dst, ac.signal)).rejects.toThrow('stopped for the test');
  });
});

describe('probeBlockCloning', () => {
  it('says no, with the reason, where zpool does not know block cloning', async () => {
    // a zpool that answers like zfs-fuse's does
    const fake = join(work, 'zpool');
    await writeFile(fake, '#!/bin/sh\necho "bad property list: invalid property \'-Hp\'" >&2\nexit 2\n', { mode: 0o755 });
    await mkdir(src);
    const r = await probeBlockCloning({ pool: 'tank', sourceDir: src, targetDir: dst, zpool: fake });
    expect(r).toEqual({ clones: false, reason: expect.stringContaining('does not know block cloning') });
  });

  it('says no when the feature is disabled, and writes no probe file then', async () => {
    const fake = join(work, 'zpool');
    await writeFile(fake, '#!/bin/sh\nprintf "feature@block_cloning\\tdisabled\\nbcloneused\\t0\\nbclonesaved\\t0\\n"\n', { mode: 0o755 });
    await mkdir(src);
    const r = await probeBlockCloning({ pool: 'tank', sourceDir: src, targetDir: dst, zpool: fake });
    expect(r).toMatchObject({ clones: false, feature: 'disabled', reason: expect.stringContaining('disabled') });
  });

  it('says no when a probe copy saves nothing, and cleans up its probe files', async () => {
    const fake = join(work, 'zpool');
    await writeFile(
      fake,
      '#!/bin/sh\n[ "$1" = sync ] && exit 0\nprintf "feature@block_cloning\\tenabled\\nbcloneused\\t0\\nbclonesaved\\t0\\n"\n',
      { mode: 0o755 },
    );
    await mkdir(src);
    const r = await probeBlockCloning({ pool: 'tank', sourceDir: src, targetDir: dst, zpool: fake });
    expect(r).toMatchObject({ clones: false, feature: 'enabled', savedBefore: 0, savedAfter: 0 });
    expect(r.reason).toMatch(/did not share/);
    expect([...(await readdir(src)), ...(await readdir(dst))]).toEqual([]);
  });
});

describe('removeStaleProbes', () => {
  it("removes the probe files of processes that are gone, and leaves a live process's probe and every other name alone", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zdc-probes-'));
    try {
      const dead = await execa(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
      const deadPid = Number(dead.stdout);
      const names = [
        `${PROBE_PREFIX}${deadPid}-0a1b2c3d4e5f`,
        `${PROBE_PREFIX}${process.pid}-0a1b2c3d4e5f`,
        `${PROBE_PREFIX}notapid`,
        '0123456789abcdef.orig',
        'other',
      ];
      for (const name of names) await writeFile(join(dir, name), 'x');
      expect(await removeStaleProbes(dir)).toEqual([names[0]]);
      expect((await readdir(dir)).sort()).toEqual(names.slice(1).sort());
      expect(await removeStaleProbes(join(dir, 'missing'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('walkDirs', () => {
  it('hands each directory over open and listed, with the state its parent made; skips a subdirectory no longer as listed', async () => {
    await mkdir(join(src, 'a', 'b'), { recursive: true });
    await mkdir(join(src, 'c'));
    await writeFile(join(src, 'a', 'b', 'f'), 'f');
    const seen: string[] = [];
    const skipped: string[] = [];
    const root = await openDir(src);
    try {
      await walkDirs<string>(
        root,
        '/',
        {
          async dir(_dir, rel, entries, state) {
            seen.push(`${rel || '.'}:${state}:${entries.map((e) => e.name).join(',')}`);
            // c is replaced by a symlink after its parent was listed: not entered
            if (rel === '') {
              await rename(join(src, 'c'), join(work, 'c-moved'));
              await symlink('/etc', join(src, 'c'));
            }
          },
          async enter(child, parent) {
            return `${parent}${child.name}/`;
          },
          skipped(child) {
            skipped.push(child.rel);
          },
        },
        { concurrency: 1 },
      );
    } finally {
      await root.close();
    }
    expect(seen.sort()).toEqual(['.:/:a,c', 'a/b:/a/b/:f', 'a:/a/:b']);
    expect(skipped).toEqual(['c']);
  });
});

describe("copyFilesFirst and describeCopyPath (the rsync plugin's choice of copy)", () => {
  const stage = (setting: BlockCloningSetting, zpool: string, parallel = true): CopyStageOptions => ({
    setting,
    parallel,
    concurrency: 16,
    zpool,
  });
  interface Line {
    level: string;
    message: string;
  }
  /** What the clone stage told job.progress(), in order. */
  const progress: unknown[] = [];
  /** Just what the clone stage uses of a job: its root, name, recorded filesystem, signal and log. */
  function fakeJob(rootdir: string, name: string, lines: Line[]): Job {
    const log = {
      debug: (message: string) => void lines.push({ level: 'debug', message }),
      info: (message: string) => void lines.push({ level: 'info', message }),
      notice: (message: string) => void lines.push({ level: 'notice', message }),
      warn: (message: string) => void lines.push({ level: 'warn', message }),
      error: (message: string) => void lines.push({ level: 'error', message }),
      child: () => log,
    };
    return {
      name,
      path: join(rootdir, name),
      root: { rootdir },
      record: { filesystem: `tank/${name}` },
      signal: new AbortController().signal,
      log,
      progress: (r: unknown) => void progress.push(r),
    } as unknown as Job;
  }
  /** A zpool that counts its calls in `calls` and answers with `script`. */
  async function fakeZpool(script: string): Promise<{ zpool: string; calls: () => Promise<number> }> {
    const zpool = join(work, 'zpool');
    const calls = join(work, 'zpool-calls');
    await writeFile(zpool, `#!/bin/sh\necho x >> '${calls}'\n${script}\n`, { mode: 0o755 });
    return { zpool, calls: async () => (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter(Boolean).length };
  }

  it('auto: probes once per root and pool, copies in the kernel where the pool cannot clone, with the reason, one log line per job', async () => {
    const { zpool, calls } = await fakeZpool('printf "feature@block_cloning\\tdisabled\\nbcloneused\\t0\\nbclonesaved\\t0\\n"');
    await mkdir(src);
    const root = join(work, 'root-a');
    const original = await openDir(src);
    try {
      for (const name of ['one', 'two']) {
        const lines: Line[] = [];
        const r = await copyFilesFirst(fakeJob(root, name, lines), original, dst, stage('auto', zpool));
        expect(r).toMatchObject({ files: 0 });
        expect(lines).toEqual([
          {
            level: 'info',
            message:
              'copy: parallel copy, 16 files at once, copied in the kernel (block cloning not available: feature@block_cloning is disabled on pool tank): 0 files, 0 MiB; then rsync for the rest',
          },
        ]);
      }
    } finally {
      await original.close();
    }
    expect(await calls()).toBe(1);
    // the dry run of a later job says what the probe found, without asking again
    expect(await describeCopyPath(fakeJob(root, 'three', []), stage('auto', zpool))).toBe(
      'parallel copy, 16 files at once, copied in the kernel (block cloning not available: feature@block_cloning is disabled on pool tank), then rsync',
    );
    expect(await calls()).toBe(1);
  });

  it('auto: a probe that fails is said and asked again by the next job; off never asks, nor does parallelCopy: false', async () => {
    const { zpool, calls } = await fakeZpool('echo "cannot open pool: permission denied" >&2; exit 1');
    await mkdir(src);
    const root = join(work, 'root-b');
    const original = await openDir(src);
    try {
      for (const name of ['one', 'two']) {
        const lines: Line[] = [];
        expect(await copyFilesFirst(fakeJob(root, name, lines), original, dst, stage('auto', zpool))).toMatchObject({ files: 0 });
        expect(lines).toEqual([
          {
            level: 'info',
            message: expect.stringMatching(
              /^copy: parallel copy, 16 files at once, copied in the kernel \(block cloning not available: the probe failed: .*permission denied/,
            ),
          },
        ]);
      }
      expect(await calls()).toBe(2);
      const lines: Line[] = [];
      expect(await copyFilesFirst(fakeJob(root, 'three', lines), original, dst, stage('off', zpool))).toMatchObject({ files: 0 });
      expect(lines).toEqual([
        {
          level: 'info',
          message:
            'copy: parallel copy, 16 files at once, read and written (blockCloning: off, no block shared): 0 files, 0 MiB; then rsync for the rest',
        },
      ]);
      lines.length = 0;
      expect(await copyFilesFirst(fakeJob(root, 'three', lines), original, dst, stage('auto', zpool, false))).toBeUndefined();
      expect(lines).toEqual([{ level: 'info', message: 'copy: rsync alone (parallelCopy: false)' }]);
      expect(await calls()).toBe(2);
    } finally {
      await original.close();
    }
    expect(await describeCopyPath(fakeJob(root, 'four', []), stage('off', zpool))).toBe(
      'parallel copy, 16 files at once, read and written (blockCloning: off, no block shared), then rsync',
    );
    expect(await describeCopyPath(fakeJob(root, 'four', []), stage('always', zpool))).toMatch(
      /^parallel copy, 16 files at once, copy_file_range, not probed/,
    );
    expect(await describeCopyPath(fakeJob(root, 'four', []), stage('off', zpool, false))).toBe('rsync alone (parallelCopy: false)');
  });

  it("auto: a dry run reads the pool's feature and writes nothing", async () => {
    const { zpool } = await fakeZpool('printf "feature@block_cloning\\tactive\\nbcloneused\\t0\\nbclonesaved\\t0\\n"');
    const root = join(work, 'root-c');
    expect(await describeCopyPath(fakeJob(root, 'one', []), stage('auto', zpool))).toBe(
      'parallel copy, 16 files at once, block cloning if a probe clone into the staging dataset shares blocks (feature@block_cloning is active on pool tank), copied in the kernel otherwise; then rsync',
    );
    expect(await readdir(dst)).toEqual([]);
  });

  it('always: clones by descriptor without probing and says so', async () => {
    const { zpool, calls } = await fakeZpool('exit 1');
    await richTree();
    const original = await openDir(src);
    const lines: Line[] = [];
    try {
      const r = await copyFilesFirst(fakeJob(join(work, 'root-d'), 'one', lines), original, dst, stage('always', zpool));
      expect(r).toMatchObject({ files: 44, links: 2 });
    } finally {
      await original.close();
    }
    expect(await calls()).toBe(0);
    // the copy's live progress counts the cloned files as they come
    expect(progress.at(-1)).toMatchObject({ files: 44 });
    expect(progress.length).toBeGreaterThanOrEqual(44);
    expect(lines).toEqual([
      {
        level: 'info',
        message: expect.stringMatching(
          /^copy: parallel copy, 16 files at once, copy_file_range, not probed \(blockCloning: always\): 44 files, [\d.]+ MiB; 1 entry left to rsync; then rsync for the rest$/,
        ),
      },
    ]);
  });
});
