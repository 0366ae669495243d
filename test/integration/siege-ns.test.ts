/**
 * Issue 19, item 6: writers in other mount namespaces. The owner (nobody) of a directory being
 * converted writes into it through a bind mount in a user+mount namespace of their own (a
 * container's volume), open-write-close: no descriptor is held between writes, so only the mount
 * itself says that the original can still change. Every write ends up in the dataset, or the
 * original is kept (and the job says who holds it) until the mount is gone; never a write lost.
 */
import { scaled } from '../helpers/time.js';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { cliSpawn, createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { helperPath, leftovers } from '../helpers/state.js';
import { exists, makeUserDir, missingFiles, NOBODY, PYTHON, startAgent } from '../helpers/attacker.js';
import { run, writeNamedConfig } from './safety-helpers.js';

const pools: TestPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.destroy();
});

/** One open-write-close append as nobody, in the mount namespace of process `pid` (through its bind mount). */
const APPEND = 'import sys\nwith open(sys.argv[1], "a") as f: f.write(sys.argv[2])';
function appendArgs(pid: number, path: string, text: string): string[] {
  return [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    '--',
    'nsenter',
    '-t',
    String(pid),
    '-U',
    '-m',
    '--preserve-credentials',
    '--',
    PYTHON,
    '-c',
    APPEND,
    path,
    text,
  ];
}

/**
 * A test plugin (root-owned, in the pool's work directory): the user's writes at the two moments
 * no holders scan can see: right after the cleanup's first catch-up pass (the last verification
 * when the grace period ended quiet) and right before the removal of the original. Each line it
 * wrote successfully is recorded in `report`.
 */
const WRITE_THROUGH_BIND = String.raw`
import { execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const APPEND = ${JSON.stringify(APPEND)};
function append(o, text) {
  try {
    execFileSync('setpriv', ['--reuid=${NOBODY}', '--regid=${NOBODY}', '--clear-groups', '--', 'nsenter', '-t', String(o.pid), '-U', '-m', '--preserve-credentials', '--', o.python, '-c', APPEND, o.path, text], { stdio: 'ignore' });
    appendFileSync(o.report, text);
  } catch {
    // the agent is gone (a later run): nothing written
  }
}
export default {
  name: 'write-through-bind',
  options: { parse: (x) => x },
  apply(hooks, { options: o }) {
    let passes = 0;
    hooks.step.tapPromise('write-through-bind', async (job, step, when) => {
      if (job.name !== o.name) return;
      if (step === 'cleanup/catch-up' && when === 'after' && passes++ === 0) append(o, 'after the last catch-up\n');
      if (step === 'cleanup/remove-original' && when === 'before') append(o, 'before the removal\n');
    });
  },
};
`;

describe('a writer through a bind mount in another mount namespace (issue 19, item 6)', () => {
  it('open-write-close writes during the grace period and after the last verification: the original is kept while the mount can write into it, the job says so, and once the mount is gone every write is in the dataset', async () => {
    const p = await createPool('sgns', 256);
    pools.push(p);
    const name = 'victim';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 5, d: 20 }, 100);
    await writeFile(join(dir, 'log.txt'), 'first\n');
    await execa('chown', [`${NOBODY}:${NOBODY}`, join(dir, 'log.txt')]);
    const agent = await startAgent(dir);
    onTestFinished(() => agent.stop().catch(() => undefined));
    const pid = agent.process.pid!;
    const report = join(p.work, 'written.txt');
    await writeFile(report, 'first\n');
    const plugin = join(p.work, 'write-through-bind.mjs');
    await writeFile(plugin, WRITE_THROUGH_BIND, { mode: 0o644 });
    const config = await writeNamedConfig(
      p,
      'ns.json',
      fastPlugins({
        quiet: { quietSeconds: 0, checkOpenFiles: false },
        rsync: { graceSeconds: 1, maxGraceSeconds: scaled(8000) / 1000 },
        more: [[plugin, { name, pid, path: join(agent.view, 'log.txt'), python: PYTHON, report }]],
      }),
    );

    const child = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let log = '';
    child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    // The swap is verified: the cleanup's grace period begins. Three writes in it, 300 ms apart.
    for (let t = Date.now(); !/verified: all|the cleanup waits/.test(log); await sleep(20)) {
      if (child.exitCode !== null || Date.now() - t > scaled(60_000)) throw new Error(`the cleanup never began:\n${log}`);
    }
    for (let i = 0; i < 3; i++) {
      await execa('setpriv', appendArgs(pid, join(agent.view, 'log.txt'), `in the grace period ${i}\n`));
      await writeFile(report, `in the grace period ${i}\n`, { flag: 'a' });
      await sleep(300);
    }
    const r = await child;
    const written = await readFile(report, 'utf8');
    const orig = helperPath(p, name, 'orig');
    // Never a write lost: each one is in the dataset, or the original is kept with it.
    const inDataset = await readFile(join(dir, 'log.txt'), 'utf8');
    const inOriginal = await readFile(join(orig, 'log.txt'), 'utf8').catch(() => '');
    expect({ written, inDataset, inOriginal }).toEqual({ written, inDataset, inOriginal: written });
    expect(r.exitCode, log).not.toBe(0);
    // Kept and reported: the mount in the other namespace is named.
    expect(log).toMatch(new RegExp(`waiting: python3\\[${pid}\\] \\(a mount of it at ${agent.view} in its mount namespace\\)`));
    expect(log).toMatch(/was still in use \(python3\[\d+\] \(a mount of it at .*\)\) for [\d.]+ s; it is kept, not removed/);
    expect(await exists(orig)).toBe(true);

    // The mount is gone: recover finishes the job, with every write.
    await agent.stop();
    const rec = await run(['recover', '--config', config], p.stateDir);
    expect(rec.exitCode, `${rec.stdout}\n${rec.stderr}`).toBe(0);
    expect(await readFile(join(dir, 'log.txt'), 'utf8')).toBe(written);
    expect(written.split('\n')).toEqual(expect.arrayContaining(['first', 'in the grace period 2', 'after the last catch-up']));
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('a directory mounted into another mount namespace before the conversion', () => {
  it('is not started while the mount is there (quiet-wait defers it, naming the mount), and is converted once it is gone', async () => {
    const p = await createPool('sgnq', 256);
    pools.push(p);
    const name = 'volume';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 5 }, 100);
    const agent = await startAgent(dir);
    onTestFinished(() => agent.stop().catch(() => undefined));
    const config = await writeNamedConfig(
      p,
      'nq.json',
      fastPlugins({ quiet: { quietSeconds: 0, checkOpenFiles: true, maxWaitSeconds: 3 } }),
    );
    const r = await run(['--config', config, 'handle', dir], p.stateDir);
    expect(r.exitCode, r.stderr).toBe(75);
    expect(r.stderr).toContain(
      `deferred: not quiet after 3 s (in use by python3[${agent.process.pid}] (a mount of it at ${agent.view} in its mount namespace))`,
    );
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);
    await agent.stop();
    const again = await run(['--config', config, 'handle', dir], p.stateDir);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});
