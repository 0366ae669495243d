/**
 * reconcile on a real pool: a burst nobody saw is converted; the sweep's zfs calls do not grow with
 * the root. And the incron path (the original 4-argument form) runs no zfs command for a name the
 * filter rejects.
 */
import { chmod, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliSpawn, createPool, datasetStates, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { leftovers } from '../helpers/state.js';

let p: TestPool;
let config: string;
/** A directory whose `zfs` logs every call, then runs the real one. */
let wrapperDir: string;
let callLog: string;

beforeAll(async () => {
  p = await createPool('reconcile', 512);
  config = await writeConfig(p, fastPlugins(), { watch: { concurrency: 3, sweepIntervalSeconds: 300 } });
  wrapperDir = join(p.work, 'bin');
  callLog = join(p.work, 'zfs-calls.log');
  const real = (await execa('sh', ['-c', 'command -v zfs'])).stdout.trim();
  await mkdir(wrapperDir, { recursive: true });
  await writeFile(join(wrapperDir, 'zfs'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${callLog}'\nexec '${real}' "$@"\n`);
  await chmod(join(wrapperDir, 'zfs'), 0o755);
});
afterAll(async () => {
  await p?.destroy();
});

/** Runs the CLI with the counting zfs first on PATH; returns the result and the zfs calls it made. */
async function counted(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string; calls: string[] }> {
  await writeFile(callLog, '');
  const r = await cli(args, {
    stateDir: p.stateDir,
    env: { PATH: `${wrapperDir}:${process.env.PATH ?? ''}` },
  });
  const calls = (await readFile(callLog, 'utf8')).split('\n').filter(Boolean);
  return { ...r, calls };
}

const countedReconcile = (cfg = config): ReturnType<typeof counted> => counted(['--config', cfg, 'reconcile', '--json']);

async function makeDatasets(prefix: string, count: number): Promise<void> {
  // One at a time: 16 concurrent `zfs create`s of mounted children of the pool's root dataset
  // deadlocked zfs-fuse (the creates waited on its FUSE answers for the root directory forever).
  for (let i = 0; i < count; i++) await execa('zfs', ['create', `${p.pool}/${prefix}${i}`]);
}

const liveNames = (): Promise<Map<string, string>> => datasetStates(p);

describe('reconcile', () => {
  it('learns the state of a root in the same number of zfs calls with 10 or 60 datasets and 5 or 50 skipped directories', async () => {
    // Directories the name filter leaves alone are looked at every sweep: they must cost no zfs call.
    const plugins = fastPlugins();
    plugins[0] = ['name-filter', { exclude: '^keep-' }];
    const cfg = await writeConfig(p, plugins, { watch: { concurrency: 3, sweepIntervalSeconds: 300 } }, 'keep-filter.json');
    const counts: number[] = [];
    await makeDatasets('first', 10);
    for (let i = 0; i < 5; i++) await mkdir(join(p.mount, `keep-${i}`));
    expect((await liveNames()).size).toBe(10);
    const small = await countedReconcile(cfg);
    expect(small.exitCode, small.stderr).toBe(0);
    counts.push(small.calls.length);

    await makeDatasets('more', 50);
    for (let i = 5; i < 50; i++) await mkdir(join(p.mount, `keep-${i}`));
    expect((await liveNames()).size).toBe(60);
    const large = await countedReconcile(cfg);
    expect(large.exitCode, large.stderr).toBe(0);
    counts.push(large.calls.length);

    const summary = (JSON.parse(large.stdout) as { roots: { counts: Record<string, number> }[] }).roots;
    expect(summary[0]!.counts.skipped).toBe(50);
    expect(summary[0]!.counts.converted ?? 0).toBe(0);
    expect(counts[1]).toBe(counts[0]);
    // Every call lists the root (and its direct children): nothing per dataset or per directory.
    for (const call of large.calls) expect(call).toMatch(new RegExp(`^list -H (-r -d 1 )?-t filesystem -o \\S+ ${p.pool}$`));
    expect(large.calls.length).toBeLessThanOrEqual(3);
    console.log(`no-op sweep: ${counts[0]} zfs calls with 10 datasets, ${counts[1]} with 60`);
    for (let i = 0; i < 50; i++) await rmdir(join(p.mount, `keep-${i}`));
  });

  it('converts a burst of directories nobody was told about, each with its files', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `burst ${String(i).padStart(2, '0')}`);
    await Promise.all(
      names.map(async (n) => {
        await mkdir(join(p.mount, n));
        await writeFile(join(p.mount, n, 'data.txt'), `contents of ${n}\n`);
      }),
    );
    const started = Date.now();
    const r = await countedReconcile();
    const seconds = (Date.now() - started) / 1000;
    expect(r.exitCode, r.stderr).toBe(0);
    const summary = (JSON.parse(r.stdout) as { roots: { counts: Record<string, number> }[] }).roots;
    expect(summary[0]!.counts.converted).toBe(30);
    expect(summary[0]!.counts.failed ?? 0).toBe(0);
    const live = await liveNames();
    for (const n of names) {
      expect(live.get(n)).toBe('live');
      expect(await readFile(join(p.mount, n, 'data.txt'), 'utf8')).toBe(`contents of ${n}\n`);
    }
    // The datasets the first test made with zfs create are not the tool's.
    expect(await leftovers(p, { testDatasets: (d) => /^(first|more)\d+$/.test(d.slice(p.pool.length + 1)) })).toEqual([]);
    // Each conversion costs a fixed number of zfs calls, whatever the size of the root.
    const perJob = r.calls.filter((c) => c.startsWith('create ')).length;
    expect(perJob).toBe(30);
    console.log(`reconcile converted 30 directories in ${seconds.toFixed(1)} s with ${r.calls.length} zfs calls`);
  });

  it('leaves a directory another process is converting to it (busy), and exits 0', async () => {
    const dir = join(p.mount, 'held');
    await mkdir(dir);
    await writeFile(join(dir, 'f'), 'held\n');
    // A slow `handle` holds the directory's lock while it waits for quiet.
    const slow = await writeConfig(p, fastPlugins({ quiet: { quietSeconds: 4 } }), {}, 'slow-quiet.json');
    const handler = cliSpawn(['--config', slow, 'handle', dir], { stateDir: p.stateDir });
    let stderr = '';
    handler.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    for (let i = 0; i < 100 && !stderr.includes('[held]'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(stderr).toContain('[held]');
    const r = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const summary = (JSON.parse(r.stdout) as { roots: { jobs: { name: string; outcome: string }[] }[] }).roots;
    expect(summary[0]!.jobs).toContainEqual(expect.objectContaining({ name: 'held', outcome: 'busy' }));
    const done = await handler;
    expect(done.exitCode).toBe(0);
    expect((await liveNames()).get('held')).toBe('live');
    expect(await readFile(join(dir, 'f'), 'utf8')).toBe('held\n');
  });
});

describe('the incron path (the original 4-argument form)', () => {
  it('runs no zfs command for a name the default plugin list rejects, nor for one --only-dirs-matching rejects', async () => {
    // The config names only the root: the default plugin list.
    const defaults = join(p.work, 'defaults.json');
    await writeFile(defaults, JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: p.mount }] }));
    await mkdir(join(p.mount, '.hidden-incron'));
    await mkdir(join(p.mount, 'not-a-run'));
    const lines = [
      ['--delay=30', p.pool, p.mount, '.hidden-incron', 'IN_CREATE,IN_ISDIR'],
      ['--delay=30', '--only-dirs-matching=^\\d{6}_', p.pool, p.mount, 'not-a-run', 'IN_CREATE,IN_ISDIR'],
    ];
    for (const line of lines) {
      const r = await counted(['--config', defaults, ...line]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.calls).toEqual([]);
    }
    // The same counting zfs sees the calls of a run that does look at the pool.
    expect((await counted(['--config', defaults, '--dry-run', p.pool, p.mount, 'not-a-run', 'IN_CREATE,IN_ISDIR'])).calls).not.toEqual([]);
    expect((await liveNames()).has('not-a-run')).toBe(false);
    await rmdir(join(p.mount, '.hidden-incron'));
    await rmdir(join(p.mount, 'not-a-run'));
  });
});
