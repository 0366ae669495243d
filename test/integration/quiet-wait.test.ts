/**
 * The wait phase (quiet-wait) on a real pool: a tree still being written is not converted
 * until it is quiet, and is deferred (untouched) when it never is; quietSeconds 0 asks for no
 * quiet period at all; a process holding a file keeps the job waiting.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cli, cliSpawn, createPool, datasets, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree } from '../helpers/tree.js';
import { leftovers } from '../helpers/state.js';
import { unprivilegedCreator } from '../helpers/writers.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('quietwait');
});
afterAll(async () => {
  await p?.destroy();
});

const plugins = (quiet: Record<string, unknown>): unknown[] => [
  'name-filter',
  ['quiet-wait', quiet],
  'zfs',
  ['rsync', { graceSeconds: 0.3 }],
];

/** Creates a new small file in `dir` every `ms` until the test ends; returns the names made. */
function keepWriting(dir: string, ms: number): string[] {
  let stop = false;
  const made: string[] = [];
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      await writeFile(join(dir, `new${i}`), `content ${i}\n`).then(
        () => made.push(`new${i}`),
        () => undefined,
      );
      await sleep(ms);
    }
  })();
  onTestFinished(async () => {
    stop = true;
    await loop;
  });
  return made;
}

describe('quiet-wait', () => {
  it('a tree written every 200 ms is deferred after maxWaitSeconds, untouched, with no dataset', async () => {
    const dir = join(p.mount, 'busy');
    await mkdir(dir);
    keepWriting(dir, 200);
    const config = await writeConfig(p, plugins({ quietSeconds: 1, maxWaitSeconds: 3, checkOpenFiles: false }));
    const r = await cli(['--config', config, '-v', 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(75); // EX_TEMPFAIL: try again later
    expect(r.stderr).toMatch(/deferred: not quiet after 3 s; will be tried again/);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/busy`);
    expect(await leftovers(p)).toEqual([]);
  });

  it('quietSeconds 0 asks for no quiet period: the same tree is converted while it is written', async () => {
    const dir = join(p.mount, 'busy0');
    await mkdir(dir);
    // Its owner writes (as an instrument does; a root writer is another test's subject).
    const creator = await unprivilegedCreator(dir, 20, 60_000);
    onTestFinished(() => creator.stop());
    await sleep(200);
    const config = await writeConfig(p, plugins({ quietSeconds: 0, maxWaitSeconds: 3, checkOpenFiles: false }));
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    creator.stop();
    const made = await creator.made;
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ exitCode: 0 });
    expect(r.stderr).toContain('converted into');
    expect(made.length).toBeGreaterThan(10);
    for (const name of made) expect(await readFile(join(dir, name), 'utf8')).toBe(`content of ${name}`);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/busy0`, mountpoint: dir, mounted: 'yes', state: 'live' });
  });

  it('waits while a process has its working directory in the tree, then converts once it is gone', async () => {
    const dir = join(p.mount, 'held');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'sub', 'f'), 'data\n');
    const before = await describeTree(dir);
    const holder = execa('sleep', ['60'], { cwd: join(dir, 'sub'), reject: false });
    onTestFinished(() => {
      holder.kill('SIGKILL');
    });
    const config = await writeConfig(p, plugins({ quietSeconds: 0.5, maxWaitSeconds: 60 }));
    const job = cliSpawn(['--config', config, '-v', 'handle', dir], { stateDir: p.stateDir });
    let log = '';
    job.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    for (let i = 0; i < 300 && !/waiting: in use by/.test(log); i++) await sleep(100);
    expect(log).toMatch(/waiting: in use by .*sleep/);
    await sleep(1500);
    expect(job.exitCode).toBeNull();
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/held`);
    holder.kill('SIGKILL');
    await holder;
    const r = await job;
    expect({ exitCode: r.exitCode, log }).toMatchObject({ exitCode: 0 });
    expect(await describeTree(dir)).toEqual(before);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/held`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});
