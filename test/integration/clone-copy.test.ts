/**
 * The parallel copy (the copy's first stage), through the CLI on zfs-fuse (which cannot share
 * blocks): with `auto` the probe says no and the files are copied in the kernel, `blockCloning:
 * off` never probes and reads and writes, `always` uses copy_file_range unprobed,
 * `parallelCopy: false` leaves everything to rsync; each conversion is exact (contents, owners,
 * modes, times, links). The descriptor-only walk and everything after it are tested here. The owner of the
 * directory (nobody) attacks the clone walk: files swapped for symlinks to root-only files,
 * directories swapped for symlinks to /root and to a root-only directory. Nothing outside their
 * directory is ever read (the root-only files' access times prove it) or reaches the dataset.
 * Real cloning on kernel OpenZFS: test/openzfs/clone.test.ts.
 */
import { link, lstat, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cli, cliSpawn, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { leftovers } from '../helpers/state.js';
import { fileName, makeSecret, makeUserDir, PYTHON, type Secret } from '../helpers/attacker.js';

let p: TestPool;
const secrets: Secret[] = [];

beforeAll(async () => {
  p = await createPool('clonecp', 384);
});
afterAll(async () => {
  for (const s of secrets) await s.remove();
  await p?.destroy();
});

/** The one "copy: ..." line of a job's log. */
function copyLines(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => /INFO: .*copy: (rsync|parallel copy)/.test(l) || /WARNING: .*copy: the parallel copy stopped/.test(l));
}

/** The files the parallel copy copied plus those it left to rsync, from its log line; undefined if none. */
function copiedOrLeft(line: string | undefined): number | undefined {
  const m = /: (\d+) files(?: cloned)?, [\d.]+ MiB(?: shared)?(?:; (\d+) entr(?:y|ies) left to rsync)?; then rsync for the rest$/.exec(
    line ?? '',
  );
  return m ? Number(m[1]) + Number(m[2] ?? 0) : undefined;
}

async function convert(name: string, rsync: Record<string, unknown>, extraArgs: string[] = []): Promise<{ exitCode: number; log: string }> {
  const config = await writeConfig(p, fastPlugins({ quiet: { quietSeconds: 0 }, rsync }), {}, `${name}.json`);
  const r = await cli(['--config', config, ...extraArgs, 'handle', join(p.mount, name)], { stateDir: p.stateDir });
  return { exitCode: r.exitCode, log: r.stderr };
}

/** A tree with a bit of everything the copy must keep. */
async function richTree(dir: string): Promise<void> {
  await makeTree(dir, 40, 3000);
  await writeFile(join(dir, 'empty'), '');
  await link(join(dir, 'd0', 'f0.dat'), join(dir, 'hard'));
  await link(join(dir, 'd0', 'f0.dat'), join(dir, 'd1', 'hard too'));
  await symlink('d0/f0.dat', join(dir, 'link'));
  await execa('mkfifo', [join(dir, 'fifo')]);
  await writeFile(join(dir, '-n\nodd name'), 'an odd name\n');
  await execa('chown', ['-R', '1234:5678', join(dir, 'd2')]);
  await execa('chmod', ['4750', join(dir, 'd3', 'f3.dat')]);
}

describe('which copy is used', () => {
  it('blockCloning auto (the default) on zfs-fuse: the probe says no, the parallel copy copies in the kernel, rsync does the rest, exact', async () => {
    const dir = join(p.mount, 'auto');
    await richTree(dir);
    const before = await describeTree(dir, { mtimes: true });
    const r = await convert('auto', {});
    expect(r).toMatchObject({ exitCode: 0, log: expect.stringContaining('converted into') });
    const lines = copyLines(r.log);
    expect(lines).toEqual([
      expect.stringMatching(
        /INFO: .*copy: parallel copy, 16 files at once, copied in the kernel \(block cloning not available: this ZFS does not know block cloning \(zfs-fuse, or OpenZFS before 2\.2\)\): /,
      ),
    ]);
    // 40 files, empty, the odd name (hard links are links to d0/f0.dat)
    expect(copiedOrLeft(lines[0])).toBe(42);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await leftovers(p)).toEqual([]);
  });

  it('blockCloning off: read and written, said so; parallelCopy false: rsync alone; a dry run says which copy it would use and writes nothing', async () => {
    const dir = join(p.mount, 'off');
    await makeTree(dir, 10);
    const dry = await convert('off', { blockCloning: 'off' }, ['--dry-run']);
    expect(dry.exitCode).toBe(0);
    expect(dry.log).toMatch(
      /would copy .* into .*: parallel copy, 16 files at once, read and written \(blockCloning: off, no block shared\), then rsync/,
    );
    const dryAuto = await convert('off', {}, ['--dry-run']);
    expect(dryAuto.log).toMatch(
      /would copy .* into .*: parallel copy, 16 files at once, copied in the kernel \(block cloning not available: this ZFS does not know block cloning/,
    );
    const dryAlone = await convert('off', { parallelCopy: false }, ['--dry-run']);
    expect(dryAlone.log).toMatch(/would copy .* into .*: rsync alone \(parallelCopy: false\)/);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/off`);
    const before = await describeTree(dir, { mtimes: true });
    const r = await convert('off', { blockCloning: 'off' });
    expect(r).toMatchObject({ exitCode: 0, log: expect.stringContaining('converted into') });
    const lines = copyLines(r.log);
    expect(lines).toEqual([
      expect.stringMatching(/INFO: .*copy: parallel copy, 16 files at once, read and written \(blockCloning: off, no block shared\): /),
    ]);
    expect(copiedOrLeft(lines[0])).toBe(10);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    const alone = join(p.mount, 'alone');
    await makeTree(alone, 10);
    const beforeAlone = await describeTree(alone, { mtimes: true });
    const ra = await convert('alone', { parallelCopy: false, copyConcurrency: 1 });
    expect(ra).toMatchObject({ exitCode: 0, log: expect.stringContaining('converted into') });
    expect(copyLines(ra.log)).toEqual([expect.stringMatching(/INFO: .*copy: rsync alone \(parallelCopy: false\)$/)]);
    expect(await describeTree(alone, { mtimes: true })).toEqual(beforeAlone);
  });

  it('an unknown blockCloning value, or a copyConcurrency out of range, is refused by the option schema', async () => {
    await makeTree(join(p.mount, 'bad-option'), 2);
    const r = await convert('bad-option', { blockCloning: 'yes' });
    expect(r.exitCode).not.toBe(0);
    expect(r.log).toMatch(/blockCloning/);
    const c = await convert('bad-option', { copyConcurrency: 0 });
    expect(c.exitCode).not.toBe(0);
    expect(c.log).toMatch(/copyConcurrency/);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/bad-option`);
  });

  it('blockCloning always: the parallel copy copies every file by copy_file_range, unprobed, rsync sends no data for them, and the conversion is exact', async () => {
    const dir = join(p.mount, 'always');
    await richTree(dir);
    const before = await describeTree(dir, { mtimes: true });
    const r = await convert('always', { blockCloning: 'always' });
    expect(r).toMatchObject({ exitCode: 0, log: expect.stringContaining('converted into') });
    // 40 files, empty, the odd name; hard and "hard too" are links to d0/f0.dat. A file whose
    // time is within ~120 ns of a millisecond's end is left to rsync (about one in 8,000).
    const lines = copyLines(r.log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/copy: parallel copy, 16 files at once, copy_file_range, not probed \(blockCloning: always\): /);
    expect(copiedOrLeft(lines[0])).toBe(42);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    const [a, b, c] = await Promise.all(['hard', 'd1/hard too', 'd0/f0.dat'].map((n) => lstat(join(dir, n))));
    expect(a!.ino).toBe(c!.ino);
    expect(b!.ino).toBe(c!.ino);
    expect((await lstat(join(dir, 'fifo'))).isFIFO()).toBe(true);
    expect(await leftovers(p)).toEqual([]);
  });
});

/**
 * A test plugin (root-owned, in the pool's work directory): once the clone stage has put `after`
 * entries into the staging copy of `watch`, the user (nobody, through setpriv) sweeps `base` from
 * its last name backwards, renaming each entry to NAME.hidden and putting a symlink in its place:
 * to the root-only file of the same name (files), or alternately to /root and to the root-only
 * directory (directories). At the end of the copy step it reports how many secret files are in
 * the staging copy, and again after the seal.
 */
const SWEEP_DURING_CLONE = String.raw`
import { spawn } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
const SWEEP = [
  'import os, sys',
  'base, secret, kind = sys.argv[1], sys.argv[2], sys.argv[3]',
  'n = 0',
  'for i, name in enumerate(sorted(os.listdir(base), reverse=True)):',
  '    p = os.path.join(base, name)',
  '    os.rename(p, p + ".hidden")',
  '    os.symlink(os.path.join(secret, name) if kind == "files" else ("/root" if i % 2 else secret), p)',
  '    n += 1',
  'print(n)',
].join('\n');
function leaks(dir, token) {
  let n = 0;
  const walk = (p) => {
    const s = lstatSync(p);
    if (s.isDirectory()) for (const e of readdirSync(p)) walk(p + '/' + e);
    else if (s.isFile() && readFileSync(p).includes(token)) n++;
  };
  try { walk(dir); } catch { return -2; }
  return n;
}
export default {
  name: 'sweep-during-clone',
  options: { parse: (x) => x },
  apply(hooks, { options: o }) {
    let watcher;
    const seen = { stagedAtSweep: -1, swept: -1, leakedAfterCopy: -1, leakedAfterSeal: -1 };
    const save = () => writeFileSync(o.report, JSON.stringify(seen));
    hooks.step.tapPromise('sweep-during-clone', async (job, step, when) => {
      if (job.name !== o.name) return;
      const staging = job.record.staging;
      if (step === 'migrate/copy' && when === 'before') {
        watcher = (async () => {
          for (let i = 0; i < 60000; i++) {
            let n = 0;
            try { n = readdirSync(staging + '/' + o.watch).length; } catch {}
            if (n >= o.after) {
              seen.stagedAtSweep = n;
              const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', o.python, '-c', SWEEP, job.path + '/' + o.base, o.target, o.kind], { stdio: ['ignore', 'pipe', 'inherit'] });
              let out = '';
              child.stdout.on('data', (c) => (out += c));
              await new Promise((resolve) => child.on('close', resolve));
              seen.swept = Number(out.trim());
              save();
              return;
            }
            await sleep(1);
          }
        })();
      }
      if (step === 'migrate/copy' && when === 'end') {
        await watcher;
        seen.leakedAfterCopy = leaks(staging, o.token);
        save();
      }
      if (step === 'migrate/seal' && when === 'after') {
        seen.leakedAfterSeal = leaks(staging, o.token);
        save();
      }
    });
  },
};
`;

/** Every regular file under `root` (never following a symlink) whose content is not the user's own. */
async function foreignFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const path = rel === '' ? root : join(root, rel);
    const s = await lstat(path);
    if (s.isDirectory()) {
      for (const name of await readdir(path)) await walk(rel === '' ? name : join(rel, name));
    } else if (s.isFile() && !(await readFile(path, 'utf8')).startsWith('user data ')) {
      found.push(rel);
    }
  };
  await walk('');
  return found.sort();
}

/** Each of the user's files is at its path or (moved aside by the sweep) at PATH.hidden, or below a DIR.hidden, with its content. */
async function userFilesKept(dir: string, files: ReadonlyMap<string, string>): Promise<string[]> {
  const bad: string[] = [];
  for (const [rel, content] of files) {
    const parts = rel.split('/');
    const candidates = [
      rel,
      `${rel}.hidden`,
      ...parts
        .slice(0, -1)
        .map((_, i) => [...parts.slice(0, i + 1).map((x, j) => (j === i ? `${x}.hidden` : x)), ...parts.slice(i + 1)].join('/')),
    ];
    let ok = false;
    for (const c of candidates) {
      const s = await lstat(join(dir, c)).catch(() => undefined);
      if (s?.isFile() && (await readFile(join(dir, c), 'utf8')) === content) ok = true;
    }
    if (!ok) bad.push(rel);
  }
  return bad;
}

describe('the clone walk cannot be redirected', () => {
  const cases = [
    {
      kind: 'files',
      label: 'files swapped for symlinks to root-only files of the same names and sizes',
      layout: { '': 3, sub: 1500 },
      base: 'sub',
      watch: 'sub',
      after: 100,
    },
    {
      kind: 'dirs',
      label: 'directories swapped for symlinks to /root and to a root-only directory',
      layout: { '': 3, dirs: 0, ...Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`dirs/d${String(i).padStart(3, '0')}`, 6])) },
      base: 'dirs',
      watch: 'dirs',
      after: 20,
    },
  ] as const;
  for (const c of cases) {
    it(`during the clone walk (blockCloning: always), ${c.label}: nothing outside the user's directory is read or reaches the dataset`, async () => {
      const name = `victim-${c.kind}`;
      const dir = join(p.mount, name);
      const files = await makeUserDir(dir, c.layout, 4096);
      const s = await makeSecret(
        Array.from({ length: 1500 }, (_, i) => fileName(i)),
        4096,
      );
      secrets.push(s);
      const secretBefore = await s.snapshot();
      const report = join(p.work, `sweep-${c.kind}.json`);
      const plugin = join(p.work, 'sweep-during-clone.mjs');
      await writeFile(plugin, SWEEP_DURING_CLONE, { mode: 0o644 });
      const config = await writeConfig(
        p,
        fastPlugins({
          quiet: { quietSeconds: 0 },
          rsync: { graceSeconds: 0.5, blockCloning: 'always' },
          more: [
            [
              plugin,
              { name, base: c.base, watch: c.watch, after: c.after, kind: c.kind, target: s.dir, token: s.token, report, python: PYTHON },
            ],
          ],
        }),
        {},
        `${name}.json`,
      );
      const child = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
      onTestFinished(() => {
        child.kill('SIGKILL');
      });
      const r = await child;
      const log = String(r.stderr);
      const seen = JSON.parse(await readFile(report, 'utf8')) as {
        stagedAtSweep: number;
        swept: number;
        leakedAfterCopy: number;
        leakedAfterSeal: number;
      };
      const lines = copyLines(log);
      const cloned = /copy_file_range, not probed \(blockCloning: always\): (\d+) files/.exec(lines.join('\n'));
      const total = files.size;
      console.log(
        `clone-walk attack (${c.kind}): swept ${seen.swept} entries once ${seen.stagedAtSweep} were staged; ${cloned?.[1] ?? '?'} of ${total} files cloned; exit ${r.exitCode}; secret files in the staging copy after the copy step: ${seen.leakedAfterCopy}, after the seal: ${seen.leakedAfterSeal}`,
      );
      // The sweep landed during the clone walk: it began once the walk had staged `after` entries,
      // and the walk then found fewer of the user's files than there are.
      expect(seen.stagedAtSweep).toBeGreaterThanOrEqual(c.after);
      expect(seen.swept).toBeGreaterThan(0);
      expect(lines, log).toHaveLength(1);
      expect(cloned, lines[0]).not.toBeNull();
      expect(Number(cloned![1])).toBeLessThan(total);
      // Nothing of the root-only files was read (their access times are as before), nor copied.
      expect(await s.snapshot()).toEqual(secretBefore);
      expect(seen.leakedAfterCopy).toBe(0);
      expect(await foreignFiles(dir)).toEqual([]);
      expect(await userFilesKept(dir, files)).toEqual([]);
      if (r.exitCode === 0) {
        expect(log).toContain('converted into');
        expect(seen.leakedAfterSeal).toBe(0);
        expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
      } else {
        console.log(
          log
            .split('\n')
            .filter((l) => l.includes('ERROR'))
            .join('\n'),
        );
        // A copy that failed before the commit: rolled back, the original untouched.
        expect(log).toMatch(/migrate failed: .*rolled back, the original directory is untouched/);
        expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/${name}`);
        expect((await lstat(dir)).dev).toBe((await lstat(p.mount)).dev);
      }
      expect(await leftovers(p)).toEqual([]);
    });
  }
});
