/**
 * Safe in a shared root (issue 8): the owner of a directory being converted (nobody, uid 65534)
 * keeps full control of it while the tool works as root. Whatever they do, the tool never
 * deletes or reads anything outside their directory, and never trusts a tampered journal record;
 * a writer the tool cannot see by path (another mount namespace) is still waited for.
 *
 * The moved-aside original is in a root-only holding directory: its owner reaches it only through
 * a bind mount made before the move, in a user+mount namespace of their own (test/helpers/attacker.ts).
 */
import { LINE_START } from '../helpers/log.js';
import { scaled } from '../helpers/time.js';
import { chmod, lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { cliLogged, createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { describeTree } from '../helpers/tree.js';
import { leftovers, helperPath } from '../helpers/state.js';
import { jobId } from '../../src/core/journal.js';
import {
  asNobody,
  exists,
  fileName,
  findLeaks,
  makeSecret,
  makeUserDir,
  missingFiles,
  PYTHON,
  startAgent,
  type Secret,
} from '../helpers/attacker.js';
import { run, writeNamedConfig } from './safety-helpers.js';

const pools: TestPool[] = [];
const secrets: Secret[] = [];
afterAll(async () => {
  for (const s of secrets) await s.remove();
  for (const p of pools) await p.destroy();
});

async function pool(label: string, mb = 256): Promise<TestPool> {
  const p = await createPool(label, mb);
  pools.push(p);
  return p;
}

async function secret(names: readonly string[], size = 0): Promise<Secret> {
  const s = await makeSecret(names, size);
  secrets.push(s);
  return s;
}

function spawnHandle(config: string, dir: string, stateDir: string) {
  return cliLogged(['--config', config, 'handle', dir], { stateDir });
}

describe('removal of the original cannot be redirected', () => {
  it('a subdirectory swapped for a symlink to a root-only directory once the removal has begun: the root-only files survive', async () => {
    const p = await pool('srrm');
    const name = 'victim';
    const dir = join(p.mount, name);
    // The attacker's subdirectory d holds files with the same names as the root-only directory's.
    const files = await makeUserDir(dir, { '': 5, d: 3000 }, 50);
    const s = await secret(Array.from({ length: 3000 }, (_, i) => fileName(i)));
    const secretBefore = await s.snapshot();
    // A bind mount (or a descriptor) of the directory holds the cleanup back: the agent parks its
    // descriptor in flight with another user (what no holders scan can attribute) and takes it
    // back once the removal begins.
    const agent = await startAgent(dir, { parked: true });
    onTestFinished(() => agent.stop());
    const config = await writeNamedConfig(p, 'rm.json', fastPlugins({ quiet: { quietSeconds: 0 }, rsync: { graceSeconds: 1 } }));
    const job = spawnHandle(config, dir, p.stateDir);
    await job.waitFor(/remove the verified original/);
    await agent.fetch();
    // Through the descriptor: wait (stat only) until the tool's removal of the original begins in d.
    const swapped = agent.send('swap-when-removing', 'd', s.dir, String(scaled(120_000) / 1000));
    const answer = await swapped;
    const r = await job.child;
    // The removal locks each directory (root's, 0700) before it lists it: the swap is refused
    // then; if it got in first, d was swapped in the middle of the removal.
    expect(answer).toMatch(/^ok \d+$|^error PermissionError\(13/);
    if (answer.startsWith('ok')) {
      expect(Number(answer.split(' ')[1])).toBeGreaterThan(0);
      expect(Number(answer.split(' ')[1])).toBeLessThan(3000);
    }
    console.log(`removal attack: ${answer}`);

    expect(await s.snapshot()).toEqual(secretBefore);
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await findLeaks(dir, s.token)).toEqual([]);
    expect({ exitCode: r.exitCode, log: job.out.log }).toMatchObject({ exitCode: 0 });
    expect(job.out.log).toContain('converted into');
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});

/**
 * A test plugin (written into the pool's work directory, root-owned): once rsync has copied
 * `after` files of the subdirectory into the staging copy, the user (nobody, through setpriv)
 * swaps the subdirectory for a symlink to the root-only directory; after the copy it puts it back.
 * It records (in `report`, as it goes) when it swapped, and how many secret files were in the
 * staging copy after rsync and after the seal.
 */
const SWAP_DURING_COPY = String.raw`
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
const nobody = (args) => execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', ...args]);
const SWAP = 'import os,sys\np=sys.argv[1]\nos.rename(p, p + ".hidden")\nos.symlink(sys.argv[2], p)';
const RESTORE = 'import os,sys\np=sys.argv[1]\nos.unlink(p)\nos.rename(p + ".hidden", p)';
function leaks(dir, token) {
  let n = 0;
  const walk = (p) => {
    const s = lstatSync(p);
    if (s.isDirectory()) for (const e of readdirSync(p)) walk(p + '/' + e);
    else if (s.isFile() && readFileSync(p).includes(token)) n++;
  };
  walk(dir);
  return n;
}
export default {
  name: 'swap-during-copy',
  options: { parse: (x) => x },
  apply(hooks, { options: o }) {
    let watcher;
    const seen = { swappedAt: -1, leakedAfterCopy: -1, leakedAfterSeal: -1 };
    hooks.step.tapPromise('swap-during-copy', async (job, step, when) => {
      if (job.name !== o.name) return;
      const staging = job.record.staging;
      if (step === 'migrate/copy' && when === 'before') {
        watcher = (async () => {
          for (let i = 0; i < 20000; i++) {
            let n = 0;
            try { n = readdirSync(staging + '/' + o.sub).length; } catch {}
            if (n >= o.after) {
              nobody([o.python, '-c', SWAP, job.path + '/' + o.sub, o.target]);
              seen.swappedAt = n;
              writeFileSync(o.report, JSON.stringify(seen));
              return;
            }
            await sleep(1);
          }
        })();
      }
      if (step === 'migrate/copy' && when === 'after') {
        await watcher;
        if (seen.swappedAt >= 0) nobody([o.python, '-c', RESTORE, job.path + '/' + o.sub]);
        seen.leakedAfterCopy = leaks(staging, o.token);
        writeFileSync(o.report, JSON.stringify(seen));
      }
      if (step === 'migrate/seal' && when === 'after') {
        seen.leakedAfterSeal = leaks(staging, o.token);
        writeFileSync(o.report, JSON.stringify(seen));
      }
    });
  },
};
`;

describe('reading cannot be redirected', () => {
  for (const restore of [false, true]) {
    it(`during the grace period, a subdirectory of the moved-aside original swapped for a symlink to a root-only directory${restore ? ' and put back before the next pass' : ''}: nothing of it reaches the dataset`, async () => {
      const p = await pool(restore ? 'srgb' : 'srga');
      const name = 'victim';
      const dir = join(p.mount, name);
      const files = await makeUserDir(dir, { '': 3, sub: 200 }, 300);
      // Same names and sizes as the user's files: a copy that followed the symlink would look right.
      const s = await secret(
        Array.from({ length: 200 }, (_, i) => fileName(i)),
        300,
      );
      const secretBefore = await s.snapshot();
      const agent = await startAgent(dir);
      onTestFinished(() => agent.stop());
      // The agent's bind mount would defer the conversion (a holder of the directory): not checked here.
      const config = await writeNamedConfig(
        p,
        'grace.json',
        fastPlugins({
          quiet: { quietSeconds: 0, checkOpenFiles: false },
          rsync: { graceSeconds: scaled(3000) / 1000, maxGraceSeconds: scaled(40_000) / 1000 },
        }),
      );
      const job = spawnHandle(config, dir, p.stateDir);
      // The swap's catch-up is over (the dataset is at the path, the original in the holding
      // directory): the cleanup's grace period has begun.
      await job.waitFor(/verified: all|the cleanup waits/);
      await sleep(1000);
      expect(await agent.send('swap', 'sub', s.dir)).toBe('ok 200');
      if (restore) {
        await sleep(1000);
        expect(await agent.send('restore', 'sub')).toBe('ok');
      }
      // The bind mount holds the original (the cleanup waits for it): the user gives it up.
      expect(await agent.send('unmount')).toBe('ok');
      const r = await job.child;

      expect(await findLeaks(dir, s.token)).toEqual([]);
      expect(await s.snapshot()).toEqual(secretBefore);
      expect(await missingFiles(dir, files)).toEqual([]);
      if (restore) {
        expect({ exitCode: r.exitCode, log: job.out.log }).toMatchObject({ exitCode: 0 });
        expect(job.out.log).toContain('converted into');
        expect(await leftovers(p)).toEqual([]);
      } else {
        // The original's sub became a symlink while the dataset's did not change: both kept, named.
        expect(r.exitCode).not.toBe(0);
        expect(job.out.log).toMatch(/sub: became a symlink in the original; the dir in the dataset is never replaced by another type/);
        expect(job.out.log).toMatch(/the original is kept at/);
        expect(await exists(helperPath(p, name, 'orig'))).toBe(true);
      }
    });
  }

  // after: swap once the staging copy of sub holds this many entries (0: as soon as rsync made it).
  // SUB files: enough to swap in the middle, few enough for the catch-up in the OpenZFS guest, where
  // block cloning leaves a whole directory to it and each entry costs two getfattr runs under emulation.
  const SUB = 600;
  for (const after of [0, 100]) {
    it(`during the bulk copy (before the commit), the subdirectory being copied swapped for a symlink to a root-only directory ${after === 0 ? 'as rsync reaches it' : 'in the middle of its copy'}: nothing of it reaches the dataset`, async () => {
      const p = await pool(`srcp${after}`, 384);
      const name = 'victim';
      const dir = join(p.mount, name);
      const files = await makeUserDir(dir, { '': 3, sub: SUB }, 4096);
      const s = await secret(
        Array.from({ length: SUB }, (_, i) => fileName(i)),
        4096,
      );
      const secretBefore = await s.snapshot();
      const report = join(p.work, 'swap-report.json');
      const plugin = join(p.work, 'swap-during-copy.mjs');
      await writeFile(plugin, SWAP_DURING_COPY, { mode: 0o644 });
      const config = await writeNamedConfig(
        p,
        'copy.json',
        fastPlugins({
          quiet: { quietSeconds: 0 },
          rsync: { graceSeconds: 0.5 },
          more: [[plugin, { name, sub: 'sub', target: s.dir, token: s.token, after, report, python: PYTHON }]],
        }),
      );
      const job = spawnHandle(config, dir, p.stateDir);
      const r = await job.child;
      expect(await exists(report), job.out.log).toBe(true);
      const seen = JSON.parse(await readFile(report, 'utf8')) as { swappedAt: number; leakedAfterCopy: number; leakedAfterSeal: number };
      // The attack landed while rsync was at sub (it had copied none or some, not all of it).
      expect(seen.swappedAt).toBeGreaterThanOrEqual(after);
      expect(seen.swappedAt).toBeLessThan(SUB);
      // A copy that stopped left the user's swap in place: the user puts sub back.
      if ((await lstat(join(dir, 'sub'))).isSymbolicLink()) {
        await execa(
          ...asNobody(PYTHON, ['-c', 'import os,sys\np=sys.argv[1]\nos.unlink(p)\nos.rename(p + ".hidden", p)', join(dir, 'sub')]),
        );
      }
      expect(await findLeaks(dir, s.token)).toEqual([]);
      expect(await s.snapshot()).toEqual(secretBefore);
      if (r.exitCode === 0) {
        // Converted: whatever rsync read, nothing secret was left in the staging copy once sealed
        // (root-only until the commit), nor ever after.
        expect(seen.leakedAfterSeal).toBe(0);
        expect(job.out.log).toContain('converted into');
        expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
      } else {
        // rsync (3.4 and later) refuses to open a file through a symlinked directory: the copy
        // stops, the job is rolled back, and the message says why.
        expect(job.out.log).toMatch(
          /migrate failed: copy failed: rsync: .*Too many levels of symbolic links.*rolled back, the original directory is untouched/,
        );
        expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);
        expect((await lstat(dir)).dev).toBe((await lstat(p.mount)).dev);
      }
      expect(await missingFiles(dir, files)).toEqual([]);
      expect(await leftovers(p)).toEqual([]);
      console.log(
        `copy attack: swapped after ${seen.swappedAt} files; exit ${r.exitCode}; secret files in the staging copy after rsync: ${seen.leakedAfterCopy}, after the seal: ${seen.leakedAfterSeal} (-1: not reached)`,
      );
    });
  }
});

describe('a tampered journal record', () => {
  it('refused with a message naming the record; nothing read from or removed in the directory it points at; the dataset untouched', async () => {
    const p = await pool('srjr');
    const name = 'victim';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 5, d: 20 }, 100);
    const s = await secret(['f0000', 'f0001', 'secret.txt']);
    const secretBefore = await s.snapshot();
    const killing = await writeNamedConfig(
      p,
      'kill.json',
      fastPlugins({ more: [['fault-injection', { killAt: 'cleanup/remove-original', when: 'before', names: [name] }]] }),
    );
    const plain = await writeNamedConfig(p, 'plain.json', fastPlugins());
    const killed = await run(['--config', killing, 'handle', dir], p.stateDir);
    expect(killed.signal).toBe('SIGKILL');
    const id = jobId(p.mount, name);
    const recordFile = join(p.stateDir, 'jobs', `${id}.json`);
    const original = await readFile(recordFile, 'utf8');
    const record = JSON.parse(original) as Record<string, unknown>;
    expect(record.aside).toBe(helperPath(p, name, 'orig'));
    const datasetBefore = await describeTree(dir, { mtimes: true });
    const asideBefore = await describeTree(helperPath(p, name, 'orig'), { mtimes: true });

    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['aside', { aside: s.dir }, /its aside path .* is not the one the tool derives/],
      ['staging', { staging: s.dir }, /its staging path .* is not the one the tool derives/],
      ['rootdir', { rootdir: '/root' }, /its rootdir .* is not/],
      ['name', { name: 'other' }, /id does not belong|is not the one/],
    ];
    // Run with the config, and without one (recover then rebuilds the roots from the journal).
    for (const [what, change, why] of cases) {
      for (const args of [['--config', plain, 'recover'], ['recover']]) {
        await writeFile(recordFile, JSON.stringify({ ...record, ...change }));
        const r = await run(args, p.stateDir);
        const errors = r.stderr
          .split('\n')
          .filter(
            (l) =>
              new RegExp(`^(?:${LINE_START}|zfs-dynamic-creator: )(ERROR: )?(?!WARNING|INFO)`).test(l) &&
              !/fault injection is armed/.test(l),
          );
        const about = { what, args: args.join(' '), exitCode: r.exitCode, stdout: r.stdout, errors };
        expect(about).toMatchObject({ exitCode: 1 });
        if (what === 'rootdir' && args.length === 1) {
          // Without a config, the roots come from the journal: a record whose rootdir is not the
          // one its id was made from defines no root; it is named, with its file, and left alone.
          expect(about.errors).toEqual([
            expect.stringMatching(
              new RegExp(
                `^${LINE_START}ERROR: journal record ${id} is not trusted \\(its id does not belong to its rootdir "/root" and name .*\\); nothing was read from it or changed; inspect `,
              ),
            ),
          ]);
          expect(r.stderr).toContain(recordFile);
        } else {
          // Said on one line (in the log, and in the summary), naming the record and its file.
          const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes(id));
          expect({
            ...about,
            summary: lines.some((l) => /^failed /.test(l)),
            log: lines.some((l) => new RegExp(`^${LINE_START}ERROR: `).test(l)),
          }).toMatchObject({ summary: true, log: true });
          for (const line of lines) {
            expect(line).toMatch(/journal record \S+ is not trusted \(.*\); nothing was read from it or changed; inspect /);
            expect(line).toMatch(why);
            expect(line).toContain(recordFile);
          }
        }
        expect(await s.snapshot()).toEqual(secretBefore);
        expect(await findLeaks(dir, s.token)).toEqual([]);
        expect(await describeTree(dir, { mtimes: true })).toEqual(datasetBefore);
        expect(await describeTree(helperPath(p, name, 'orig'), { mtimes: true })).toEqual(asideBefore);
        expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'swapped' });
      }
    }

    // The genuine record, put back, is finished as usual.
    await writeFile(recordFile, original);
    const r = await run(['--config', plain, 'recover'], p.stateDir);
    expect({ exitCode: r.exitCode, out: r.stdout + r.stderr }).toMatchObject({ exitCode: 0 });
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await s.snapshot()).toEqual(secretBefore);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('a writer in another mount namespace', () => {
  it('appending through a bind mount of the root all through the conversion: waited for, and every line ends up in the dataset, in order', async () => {
    const p = await pool('srns');
    const name = 'victim';
    const dir = join(p.mount, name);
    await makeUserDir(dir, { '': 5, d: 20 }, 100);
    const base = await mkdtemp('/tmp/zdc-nswriter-');
    onTestFinished(() => rm(base, { recursive: true, force: true }));
    await chmod(base, 0o700);
    const view = join(base, 'root');
    await execa('mkdir', [view]);
    // Root, in a mount namespace of its own, opens the file through a bind mount of the root:
    // no path under the root in our namespace names it.
    const script = `
      const fs = require('fs');
      const cp = require('child_process');
      const [root, view, rel] = process.argv.slice(1);
      cp.execFileSync('mount', ['--bind', root, view]);
      const fd = fs.openSync(view + '/' + rel, 'a');
      let n = 0;
      const timer = setInterval(() => { fs.writeSync(fd, 'line ' + (n++) + '\\n'); }, 20);
      process.on('SIGTERM', () => { clearInterval(timer); fs.fsyncSync(fd); fs.closeSync(fd); process.stdout.write(String(n)); process.exit(0); });
      process.stdout.write('ready\\n');
    `;
    const writer = execa(
      'unshare',
      ['-m', '--propagation', 'private', '--', process.execPath, '-e', script, p.mount, view, `${name}/log.txt`],
      { cwd: '/', reject: false },
    );
    onTestFinished(() => {
      writer.kill('SIGKILL');
    });
    await new Promise<void>((resolve, reject) => {
      writer.stdout!.once('data', () => resolve());
      void writer.then((r) => reject(new Error(`writer exited: ${String(r.stderr)}`)));
    });
    const config = await writeNamedConfig(
      p,
      'ns.json',
      fastPlugins({
        quiet: { quietSeconds: 0, checkOpenFiles: false },
        rsync: { graceSeconds: 2, maxGraceSeconds: scaled(60_000) / 1000 },
      }),
    );
    const job = spawnHandle(config, dir, p.stateDir);
    await job.waitFor(/waiting: .* still hold files in the original/);
    await sleep(3000);
    // The writer still holds the original: the cleanup still waits, the original is kept.
    expect(job.child.exitCode).toBeNull();
    expect(await exists(helperPath(p, name, 'orig'))).toBe(true);
    writer.kill('SIGTERM');
    const written = Number(String((await writer).stdout).replace('ready\n', ''));
    expect(written).toBeGreaterThan(100);
    const r = await job.child;
    expect({ exitCode: r.exitCode, log: job.out.log }).toMatchObject({ exitCode: 0 });
    expect(job.out.log).toContain('converted into');
    const lines = (await readFile(join(dir, 'log.txt'), 'utf8')).split('\n').filter(Boolean);
    expect(lines).toEqual(Array.from({ length: written }, (_, i) => `line ${i}`));
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});
