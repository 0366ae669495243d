/**
 * Fair to every user (issue 19, items 10 and 11, and the limits at the commit), on the real pool
 * with a real unprivileged holder (nobody, through setpriv):
 *
 *  - one user holds more directories open than there are lanes, names sorting first: another
 *    user's directory is converted while they stay held (not after maxWaitSeconds);
 *  - one user holds the original of a committed job: a new directory converts in the same sweep,
 *    beside the held job's grace period (not after maxGraceSeconds);
 *  - the quota is in force from the commit, and a late change that no longer fits keeps the original.
 */
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { NOBODY, PYTHON, asNobody } from '../helpers/attacker.js';
import { cli, cliSpawn, createPool, datasetStates, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { scaled } from '../helpers/time.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('fair', 256);
  await chmod(p.mount, 0o1777);
});
afterAll(async () => {
  await p?.destroy();
});

/** nobody holding each file open for appending until stopped; `append(n)` writes n bytes to the first. */
const HOLDER = `
import os, sys
fds = [os.open(path, os.O_WRONLY | os.O_APPEND) for path in sys.argv[1:]]
print('ready', flush=True)
for line in sys.stdin:
    n = int(line)
    try:
        os.write(fds[0], os.urandom(n))
        print('ok', flush=True)
    except OSError as e:
        print('error', e.errno, flush=True)
`;

interface Holder {
  append(bytes: number): Promise<string>;
  stop(): Promise<void>;
}

async function holdAsNobody(files: readonly string[]): Promise<Holder> {
  const [cmd, args] = asNobody(PYTHON, ['-c', HOLDER, ...files]);
  const child: ResultPromise = execa(cmd, args, { cwd: '/', reject: false, stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', buffer: false });
  const lines = createInterface({ input: child.stdout! });
  const answers: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  lines.on('line', (l) => (waiting.shift() ?? ((x: string) => answers.push(x)))(l));
  const next = (): Promise<string> =>
    answers.length > 0 ? Promise.resolve(answers.shift()!) : new Promise((resolve) => waiting.push(resolve));
  const ready = await next();
  if (ready !== 'ready') throw new Error(`holder did not start: ${ready}`);
  const holder = {
    append: (bytes: number) => {
      child.stdin!.write(`${bytes}\n`);
      return next();
    },
    async stop() {
      child.stdin!.end();
      await child;
    },
  };
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  return holder;
}

/** A directory of `owner` with one file. */
async function userDir(name: string, owner: number): Promise<string> {
  const dir = join(p.mount, name);
  await mkdir(dir);
  await writeFile(join(dir, 'data.txt'), `${name}\n`);
  await chown(join(dir, 'data.txt'), owner, owner);
  await chown(dir, owner, owner);
  return dir;
}

async function waitState(name: string, states: readonly string[], timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = (await datasetStates(p)).get(name);
    if (state !== undefined && states.includes(state)) return state;
    if (Date.now() > deadline) return state;
    await sleep(250);
  }
}

describe('one user cannot take every lane', () => {
  it('more held directories than lanes (names sorting first): another user’s directory converts while they stay held', async () => {
    // 6 lanes; one owner may hold at most 5 of them (the default: a quarter kept for the others).
    const held: string[] = [];
    for (let i = 0; i < 8; i++) held.push(await userDir(`aa-held-${i}`, NOBODY));
    const holder = await holdAsNobody(held.map((d) => join(d, 'data.txt')));
    const other = 'zz-other';
    await userDir(other, 4242);
    const config = await writeConfig(
      p,
      fastPlugins({ quiet: { maxWaitSeconds: 600 } }),
      { watch: { concurrency: 2, maxJobs: 6, sweepIntervalSeconds: 300 } },
      'lanes.json',
    );
    const sweep = cliSpawn(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    onTestFinished(() => {
      sweep.kill('SIGKILL');
    });
    // Before: the held ones took all 6 lanes in name order, for maxWaitSeconds (here 600 s).
    expect(await waitState(other, ['live'], scaled(60_000))).toBe('live');
    expect(await readFile(join(p.mount, other, 'data.txt'), 'utf8')).toBe(`${other}\n`);
    // The held ones wait (never forced): none of them was converted.
    const states = await datasetStates(p);
    for (const d of held) expect(states.has(d.slice(p.mount.length + 1))).toBe(false);
    sweep.kill('SIGTERM');
    const r = await sweep;
    expect(r.exitCode).toBe(0);
    expect(String(r.stdout)).toMatch(/deferred/);
    await holder.stop();
  });
});

describe('a held committed job waits beside the new conversions', () => {
  it('the original of a committed job held open: a new directory converts in the same sweep, and the held job finishes once let go', async () => {
    const name = 'held-orig';
    const dir = await userDir(name, NOBODY);
    const holder = await holdAsNobody([join(dir, 'data.txt')]);
    // Committed and published, its cleanup left to the next run (no quiet wait: the file is open).
    const first = await writeConfig(p, ['name-filter', ['zfs', {}], ['rsync', { graceSeconds: 0.3 }]], {}, 'first.json');
    const r1 = await cli(['--config', first, 'handle', '--no-wait', dir], { stateDir: p.stateDir });
    expect({ exitCode: r1.exitCode, stderr: r1.stderr.slice(-2000) }).toMatchObject({ exitCode: 0 });
    expect((await datasetStates(p)).get(name)).toBe('swapped');

    const fresh = 'new-dir';
    await userDir(fresh, 4242);
    const config = await writeConfig(
      p,
      fastPlugins({ rsync: { maxGraceSeconds: 600 } }),
      { watch: { concurrency: 2, maxJobs: 8, sweepIntervalSeconds: 300 } },
      'beside.json',
    );
    const sweep = cliSpawn(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    onTestFinished(() => {
      sweep.kill('SIGKILL');
    });
    // Before: the sweep waited maxGraceSeconds (600 s here) for the held original first.
    expect(await waitState(fresh, ['live'], scaled(60_000))).toBe('live');
    expect((await datasetStates(p)).get(name)).toBe('swapped');
    await holder.stop();
    const r = await sweep;
    expect({ exitCode: r.exitCode, stdout: String(r.stdout) }).toMatchObject({ exitCode: 0 });
    expect(String(r.stdout)).toMatch(/1 recovered/);
    expect((await datasetStates(p)).get(name)).toBe('live');
  });
});

describe('limits at the commit', () => {
  it('the quota is set at the commit: in force while the original is held; a late change that no longer fits keeps the original', async () => {
    const name = 'quota-held';
    const dir = await userDir(name, NOBODY);
    const holder = await holdAsNobody([join(dir, 'data.txt')]);
    const plugins = [
      'name-filter',
      ['zfs', { properties: { compression: 'off', quota: '8M' } }],
      ['rsync', { graceSeconds: 0.3, maxGraceSeconds: 5 }],
    ];
    const config = await writeConfig(p, plugins, {}, 'quota.json');
    const r1 = await cli(['--config', config, 'handle', '--no-wait', dir], { stateDir: p.stateDir });
    expect({ exitCode: r1.exitCode, stderr: r1.stderr.slice(-2000) }).toMatchObject({ exitCode: 0 });
    // Before: no quota at all until the original was removed.
    expect((await zfs('get', '-H', '-o', 'value', 'quota', `${p.pool}/${name}`)).trim()).toBe('8M');
    // The user fills the live dataset, then writes late to the original through the old descriptor.
    await writeFile(join(dir, 'fill.bin'), randomBytes(6 * 2 ** 20));
    expect(await holder.append(4 * 2 ** 20)).toBe('ok');
    await holder.stop();
    const r2 = await cli(['--config', config, 'recover'], { stateDir: p.stateDir });
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr).toMatch(/does not fit in .*quota-held.*quota/);
    // Nothing lost: the original (with its late change) is kept, the job not finished.
    expect((await datasetStates(p)).get(name)).toBe('swapped');
    const status = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
    expect(status.stdout).toContain(name);
    // Room made (the quota raised): recover finishes it, the late change in the dataset.
    await zfs('set', 'quota=64M', `${p.pool}/${name}`);
    const r3 = await cli(['--config', config, 'recover'], { stateDir: p.stateDir });
    expect({ exitCode: r3.exitCode, stderr: r3.stderr.slice(-2000) }).toMatchObject({ exitCode: 0 });
    expect((await datasetStates(p)).get(name)).toBe('live');
    expect((await readFile(join(dir, 'data.txt'))).length).toBe(`${name}\n`.length + 4 * 2 ** 20);
  });
});
