/**
 * Issue 19, "removal only of what was verified" and "verification that sees every change", on the
 * real pool with a real unprivileged attacker (nobody, uid 65534):
 *
 * - item 4: a descriptor of the user's own directory parked in an AF_UNIX socket (SCM_RIGHTS: in
 *   no process's /proc/PID/fd, so no holder), used once the removal of the original is about to
 *   begin to rename into it a directory holding another user's non-empty directory; also when the
 *   removal is resumed by `recover` after a crash;
 * - item 5: a directory renamed in the dataset, then a file below it in the original appended to
 *   through a descriptor opened before the swap;
 * - compare-and-copy: a user's edit in the dataset between the judging of a catch-up copy and the copy.
 *
 * The instants are made deterministic with the fault-injection plugin's pause (a harmless SIGCONT
 * after it) and by holding a descriptor (a holder: the grace period waits for it).
 */
import { scaled } from '../helpers/time.js';
import { chmod, chown, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { cli, cliLogged, createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { helperPath, leftovers } from '../helpers/state.js';
import { makeUserDir, missingFiles, NOBODY, PYTHON } from '../helpers/attacker.js';
import { writeNamedConfig } from './safety-helpers.js';

const OTHER = 4242;
/** The attacker's second account. */
const SECOND = 65533;
const pools: TestPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.destroy();
});

async function pool(label: string): Promise<TestPool> {
  const p = await createPool(label, 256);
  pools.push(p);
  return p;
}

function spawnCli(args: string[], stateDir: string) {
  return cliLogged(args, { stateDir });
}

/** A pause right before `step` (journalled, then nothing done for a while), for the attacker's move. */
function pauseBefore(step: string, name: string): unknown {
  return ['fault-injection', { killAt: step, when: 'before', signal: 'SIGCONT', pauseSeconds: scaled(4000) / 1000, names: [name] }];
}

/**
 * A second account of the attacker's (uid 65533, in no holders scan's sight as the owner) parks a
 * descriptor of `dir` in a socket pair of its own (sent with SCM_RIGHTS, its own copy closed), then,
 * on "go", takes it back and renames `from` into it as `as` (renameat through the descriptor: the
 * path of `dir` no longer matters). nobody opened `dir` and `from` to that account (mode 0777).
 */
const PARKER = String.raw`
import os, socket, sys
park, src, name = sys.argv[1], sys.argv[2], sys.argv[3]
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
fd = os.open(park, os.O_RDONLY | os.O_DIRECTORY)
socket.send_fds(a, [b'x'], [fd])
os.close(fd)
print('parked', flush=True)
sys.stdin.readline()
msg, fds, flags, addr = socket.recv_fds(b, 1, 1)
try:
    os.rename(src, name, dst_dir_fd=fds[0])
    print('moved', flush=True)
except Exception as e:
    print('error', repr(e), flush=True)
os.close(fds[0])
sys.stdin.readline()
`;

interface Parker {
  go(): Promise<string>;
  /** Descriptors of the parker's that lead into `dir` (none while parked: it is in flight). */
  stop(): Promise<void>;
  readonly process: ResultPromise;
}

async function startParker(park: string, from: string, as: string): Promise<Parker> {
  for (const d of [park, from, dirname(from)]) await chmod(d, 0o777);
  const child = execa('setpriv', [`--reuid=${SECOND}`, `--regid=${SECOND}`, '--clear-groups', '--', PYTHON, '-c', PARKER, park, from, as], {
    cwd: '/',
    reject: false,
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => String((await lines.next()).value ?? '');
  expect(await next()).toBe('parked');
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  return {
    process: child,
    async go() {
      child.stdin!.write('go\n');
      return next();
    },
    async stop() {
      child.stdin!.end();
      await child;
    },
  };
}

/** The attacker's own directory `stash` (nobody's) holding another user's non-empty directory. */
async function othersData(p: TestPool): Promise<{ stash: string; precious: string }> {
  // In a directory of the attacker's own (the root itself is not theirs to rename in).
  const home = join(p.mount, 'attacker');
  const stash = join(home, 'stash');
  await mkdir(join(stash, 'theirs'), { recursive: true });
  await chown(home, NOBODY, NOBODY);
  const precious = "another user's files, never the attacker's to delete\n";
  await writeFile(join(stash, 'theirs', 'precious'), precious);
  await chown(join(stash, 'theirs', 'precious'), OTHER, OTHER);
  await chown(join(stash, 'theirs'), OTHER, OTHER);
  await chown(stash, NOBODY, NOBODY);
  return { stash, precious };
}

describe('removal only of what was verified (item 4)', () => {
  it("a directory holding another user's files, renamed into the original through a descriptor parked in a socket once its removal is about to begin: left where it is, named, the original kept", async () => {
    const p = await pool('sgrm');
    const dir = join(p.mount, 'victim');
    const files = await makeUserDir(dir, { '': 3, park: 2 }, 50);
    const { stash, precious } = await othersData(p);
    const parker = await startParker(join(dir, 'park'), stash, 'stash');
    const config = await writeNamedConfig(
      p,
      'rm.json',
      fastPlugins({ quiet: { quietSeconds: 0 }, more: [pauseBefore('cleanup/remove-original', 'victim')] }),
    );
    const job = spawnCli(['--config', config, 'handle', dir], p.stateDir);
    await job.waitFor(/fault injection: pausing/);
    expect(await parker.go()).toBe('moved');
    const r = await job.child;
    await parker.stop();

    const aside = helperPath(p, 'victim', 'orig');
    expect(await readFile(join(aside, 'park', 'stash', 'theirs', 'precious'), 'utf8')).toBe(precious);
    expect(r.exitCode).toBe(1);
    expect(job.out.log).toMatch(
      /1 entry appeared in the original during its removal that the verification never saw \(.*park\/stash.*\): left where it is/,
    );
    // The user's data is whole in the dataset.
    expect(await missingFiles(dir, files)).toEqual([]);
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/victim`)).toMatchObject({ mountpoint: dir, mounted: 'yes' });
  });

  it('the same against a removal resumed by recover after a crash: its own pass is the verification, and what was moved in after it is left', async () => {
    const p = await pool('sgrr');
    const dir = join(p.mount, 'victim');
    const files = await makeUserDir(dir, { '': 3, park: 2 }, 50);
    const { stash, precious } = await othersData(p);
    const parker = await startParker(join(dir, 'park'), stash, 'stash');
    // A crash as the removal begins (journalled as started, nothing removed).
    const crash = await writeNamedConfig(
      p,
      'crash.json',
      fastPlugins({ quiet: { quietSeconds: 0 }, more: [['fault-injection', { killAt: 'cleanup/remove-original', when: 'before' }]] }),
    );
    const first = await cli(['--config', crash, 'handle', dir], { stateDir: p.stateDir });
    expect(first.exitCode).not.toBe(0);
    await rm(join(p.stateDir, 'fault-injection'), { recursive: true, force: true });
    const config = await writeNamedConfig(
      p,
      'resume.json',
      fastPlugins({ quiet: { quietSeconds: 0 }, more: [pauseBefore('cleanup/remove-original', 'victim')] }),
    );
    const rec = spawnCli(['--config', config, 'recover'], p.stateDir);
    await rec.waitFor(/fault injection: pausing/);
    expect(await parker.go()).toBe('moved');
    const r = await rec.child;
    await parker.stop();

    const aside = helperPath(p, 'victim', 'orig');
    expect(await readFile(join(aside, 'park', 'stash', 'theirs', 'precious'), 'utf8')).toBe(precious);
    expect(r.exitCode).not.toBe(0);
    expect(rec.out.log).toMatch(/appeared in the original during its removal that the verification never saw/);
    expect(await missingFiles(dir, files)).toEqual([]);
  });
});

describe('a verified removal interrupted', () => {
  it("killed in the middle: recover takes the directories it had locked (root's, 0700) for what they were, finishes, and the dataset keeps its owners and modes", async () => {
    const p = await pool('sgrk');
    const dir = join(p.mount, 'victim');
    const files = await makeUserDir(dir, { '': 3, a: 1500, b: 1500 }, 20);
    const crash = await writeNamedConfig(
      p,
      'crash.json',
      fastPlugins({
        quiet: { quietSeconds: 0 },
        more: [['fault-injection', { killAt: 'cleanup/remove-original', when: 'during', duringMs: 30 }]],
      }),
    );
    const first = await cli(['--config', crash, 'handle', dir], { stateDir: p.stateDir });
    console.log(`removal killed in the middle: ${first.exitCode !== 0}`);
    const plain = await writeNamedConfig(p, 'plain.json', fastPlugins({ quiet: { quietSeconds: 0 } }));
    const rec = await cli(['--config', plain, 'recover'], { stateDir: p.stateDir });
    expect({ exitCode: rec.exitCode, log: rec.stderr }).toMatchObject({ exitCode: 0 });
    expect(await missingFiles(dir, files)).toEqual([]);
    for (const d of [dir, join(dir, 'a'), join(dir, 'b')]) expect(await stat(d)).toMatchObject({ uid: NOBODY, gid: NOBODY, mode: 0o40755 });
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('verification that sees every change (item 5)', () => {
  it('a directory renamed in the dataset, then a file below it in the original appended to through a descriptor opened before the swap: a conflict, the late line kept', async () => {
    const p = await pool('sgvr');
    const dir = join(p.mount, 'victim');
    const files = await makeUserDir(dir, { '': 2, docs: 3 }, 50);
    const config = await writeNamedConfig(p, 'v.json', fastPlugins({ quiet: { quietSeconds: 0, checkOpenFiles: false } }));
    // Opened before the swap: it will write into the original (and, held, delays the cleanup's verification).
    const late = await open(join(dir, 'docs', 'f0000'), 'a');
    const job = spawnCli(['--config', config, 'handle', dir], p.stateDir);
    try {
      await job.waitFor(/verified: all|the cleanup waits/);
      await rename(join(dir, 'docs'), join(dir, 'docs-renamed'));
      await late.write('the late line\n');
    } finally {
      await late.close();
    }
    const r = await job.child;

    const aside = helperPath(p, 'victim', 'orig');
    expect(await readFile(join(aside, 'docs', 'f0000'), 'utf8')).toBe(`${files.get('docs/f0000')!}the late line\n`);
    expect(r.exitCode).toBe(1);
    expect(job.out.log).toMatch(
      /docs\/f0000: changed in the original \(size .*\), below a directory renamed, deleted or replaced in the dataset/,
    );
    // The dataset keeps the user's rename; the unchanged entries went with it and are no conflict.
    expect(await readFile(join(dir, 'docs-renamed', 'f0001'), 'utf8')).toBe(files.get('docs/f0001'));
    expect(job.out.log).not.toMatch(/docs\/f0001:/);
  });
});

describe('compare-and-copy', () => {
  it("a user's edit in the dataset made after a catch-up copy was decided and before it was made: never overwritten, a conflict", async () => {
    const p = await pool('sgcc');
    const dir = join(p.mount, 'victim');
    const files = await makeUserDir(dir, { '': 3 }, 50);
    const config = await writeNamedConfig(
      p,
      'cc.json',
      fastPlugins({ quiet: { quietSeconds: 0, checkOpenFiles: false }, more: [pauseBefore('cleanup/catch-up-copy', 'victim')] }),
    );
    const late = await open(join(dir, 'f0001'), 'a');
    const job = spawnCli(['--config', config, 'handle', dir], p.stateDir);
    try {
      await job.waitFor(/verified: all|the cleanup waits/);
      // A late change to the original alone: the cleanup's pass decides to copy it.
      await late.write('late in the original\n');
    } finally {
      await late.close();
    }
    await job.waitFor(/fault injection: pausing/);
    await writeFile(join(dir, 'f0001'), "the user's edit in the dataset\n");
    const r = await job.child;

    expect(await readFile(join(dir, 'f0001'), 'utf8')).toBe("the user's edit in the dataset\n");
    const aside = helperPath(p, 'victim', 'orig');
    expect(await readFile(join(aside, 'f0001'), 'utf8')).toBe(`${files.get('f0001')!}late in the original\n`);
    expect(r.exitCode).toBe(1);
    expect(job.out.log).toMatch(/f0001: changed in the original .* and in the dataset/);
  });
});
