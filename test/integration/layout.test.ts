/**
 * Runs below the root (issue 20's layout), on a real pool: a Nanopore-like experiment/sample/run
 * at depth 3. A run whose levels are root's converts into <rootfs>/exp/sample/run, the levels'
 * datasets made with canmount=off (their directories stay plain directories of the root); a run
 * under a level a plain user owns is refused with one line and left whole (until the config
 * trusts that owner); a name that does not fit the layout is left alone and listed; the daemon
 * sees runs made at depth 3, under levels made after it started too; a level that is a symbolic
 * link is never gone through; a run killed past its commit point is found and finished by recover.
 */
import { chmod, chown, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync } from 'node:fs';
import { jobId } from '../../src/core/journal.js';
import { startDaemon } from '../helpers/daemon.js';
import { parseExposition, sampleValue } from '../helpers/prom.js';
import { scaled } from '../helpers/time.js';
import { cli, createPool, datasets, fastPlugins, waitLive, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';

const USER = 4242;
const RUN = '20261207_1200_MN12345_FAQ00001_0a1b2c3d';
const LEVELS = ['.*', '.*', '^\\d{8}_\\d{4}_'];

let p: TestPool;
beforeAll(async () => {
  p = await createPool('layout', 256);
});
afterAll(async () => {
  await p?.destroy();
});

async function config(name: string, trustedOwners: number[] = [], more: Record<string, unknown> = {}): Promise<string> {
  const file = await writeConfig(p, fastPlugins(), more, name);
  const raw = JSON.parse(await readFile(file, 'utf8')) as { roots: Record<string, unknown>[] };
  raw.roots[0]!.layout = { depth: 3, levels: LEVELS, trustedOwners };
  await writeFile(file, JSON.stringify(raw));
  return file;
}

/** experiment/sample made by root (0755), the run by a plain user, with its files. */
async function makeRun(rel: string, levelOwner = 0): Promise<void> {
  const [exp, sample] = rel.split('/');
  for (const level of [exp!, `${exp!}/${sample!}`]) {
    await mkdir(join(p.mount, level), { recursive: true });
    await chmod(join(p.mount, level), 0o755);
  }
  if (levelOwner !== 0) await chown(join(p.mount, exp!), levelOwner, levelOwner);
  const run = join(p.mount, rel);
  await mkdir(join(run, 'pod5'), { recursive: true });
  await writeFile(join(run, 'pod5', 'reads.pod5'), Buffer.alloc(8192, 3));
  await writeFile(join(run, 'final_summary_FAQ00001.txt'), 'done\n');
  await chown(run, USER, USER);
}

async function expectWhole(rel: string): Promise<void> {
  expect((await readFile(join(p.mount, rel, 'pod5', 'reads.pod5'))).equals(Buffer.alloc(8192, 3))).toBe(true);
  expect(await readFile(join(p.mount, rel, 'final_summary_FAQ00001.txt'), 'utf8')).toBe('done\n');
}

const dev = async (rel: string): Promise<number> => (await stat(join(p.mount, rel))).dev;

describe('layout depth 3 (experiment/sample/run)', () => {
  it("converts a run under root's levels, refuses one under a user's level, leaves a name that does not fit alone", async () => {
    const file = await config('layout.json');
    const good = `exp1/sampleA/${RUN}`;
    const bad = `exp2/sampleB/${RUN}`;
    await makeRun(good);
    await makeRun(bad, USER);
    await writeFile(join(p.mount, 'exp1', 'readme.txt'), 'a plain file of a level\n');
    await mkdir(join(p.mount, 'exp1', 'sampleA', 'notes'));

    const r = await cli(['--config', file, 'reconcile'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = await datasets(p.pool);
    expect(rows.find((d) => d.name === `${p.pool}/${good}`)).toMatchObject({
      mountpoint: join(p.mount, good),
      mounted: 'yes',
      state: 'live',
    });
    for (const level of ['exp1', 'exp1/sampleA']) {
      expect(rows.find((d) => d.name === `${p.pool}/${level}`)).toMatchObject({ mounted: 'no' });
      expect((await zfs('get', '-H', '-o', 'value', 'canmount', `${p.pool}/${level}`)).trim()).toBe('off');
      expect(await dev(level)).toBe(await dev('.'));
    }
    expect(await dev(good)).not.toBe(await dev('.'));
    await expectWhole(good);
    expect(await readFile(join(p.mount, 'exp1', 'readme.txt'), 'utf8')).toBe('a plain file of a level\n');

    // The user's level: refused, one line, whole, no dataset.
    const lines = r.stderr.split('\n').filter((l) => l.includes('exp2'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/WARNING.*exp2" is owned by uid 4242, neither root nor a trusted owner.*left as it is/);
    await expectWhole(bad);
    expect(await dev(bad)).toBe(await dev('.'));
    expect(rows.some((d) => d.name.startsWith(`${p.pool}/exp2`))).toBe(false);

    // Said once; the name that does not fit is listed as ignored.
    const again = await cli(['--config', file, 'reconcile'], { stateDir: p.stateDir });
    expect(again.stderr).not.toMatch(/WARNING|ERROR/);
    const status = await cli(['--config', file, 'status', '--json'], { stateDir: p.stateDir });
    const root = (JSON.parse(status.stdout) as { roots: { ignored: { name: string }[]; refused: { name: string }[] }[] }).roots[0]!;
    expect(root.ignored.map((x) => x.name)).toEqual(['exp1/sampleA/notes']);
    expect(root.refused.map((x) => x.name)).toEqual([bad]);

    // Trusted by the config: converted.
    const trusted = await cli(['--config', await config('trusted.json', [USER]), 'reconcile'], { stateDir: p.stateDir });
    expect(trusted.exitCode, trusted.stderr).toBe(0);
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/${bad}`)).toMatchObject({ mounted: 'yes', state: 'live' });
    await expectWhole(bad);
  });

  it('the daemon sees runs made at depth 3, under a level made after it started too', async () => {
    // Its first sweep over before the runs are made, and none after (every 300 s): the watcher finds them.
    const textfile = join(p.work, 'daemon.prom');
    const lastSweep = async (): Promise<number> => {
      const text = await readFile(textfile, 'utf8').catch(() => undefined);
      const name = 'zfs_dynamic_creator_last_sweep_timestamp_seconds';
      return text === undefined ? 0 : (sampleValue(parseExposition(text), name, { root: p.mount }) ?? 0);
    };
    const daemon = await startDaemon(p, await config('daemon.json', [], { metrics: { textfile } }));
    for (const deadline = Date.now() + scaled(30_000); (await lastSweep()) === 0 && Date.now() < deadline;) await sleep(200);
    const swept = await lastSweep();
    expect(swept).toBeGreaterThan(0);
    const runs = [`exp1/sampleA/${RUN.replace('0001', '0002')}`, `exp3/sampleC/${RUN.replace('0001', '0003')}`];
    for (const rel of runs) await makeRun(rel);
    await waitLive(p, runs, scaled(60_000));
    expect(await lastSweep()).toBe(swept);
    for (const rel of runs) await expectWhole(rel);
    expect(daemon.output()).not.toMatch(/ERROR/);
  });

  it('with the completion policy (nanopore preset): a run at depth 3 waits for its final_summary, then converts; its run is recorded complete', async () => {
    const file = await config('nanopore.json');
    const raw = JSON.parse(await readFile(file, 'utf8')) as { roots: { plugins: unknown[] }[] };
    raw.roots[0]!.plugins.unshift(['completion', { policy: 'complete', preset: 'nanopore', markerAgeSeconds: 0, recheckSeconds: 1 }]);
    await writeFile(file, JSON.stringify(raw));
    const daemon = await startDaemon(p, file);
    const rel = `exp7/sampleG/${RUN.replace('0001', '0007')}`;
    await makeRun(rel);
    const summary = join(p.mount, rel, 'final_summary_FAQ00001.txt');
    await rm(summary);
    // Seen and waiting (its run recorded), never converted while the summary is missing.
    const record = join(p.stateDir, 'runs', `${jobId(p.mount, rel)}.json`);
    for (const deadline = Date.now() + scaled(30_000); !existsSync(record) && Date.now() < deadline;) await sleep(100);
    await sleep(scaled(3000));
    expect(await dev(rel)).toBe(await dev(''));
    expect(JSON.parse(await readFile(record, 'utf8'))).toMatchObject({ name: rel, state: 'waiting', policy: 'complete (nanopore)' });
    await writeFile(summary, 'done\n');
    await waitLive(p, [rel], scaled(60_000));
    await expectWhole(rel);
    for (
      const deadline = Date.now() + scaled(10_000);
      JSON.parse(await readFile(record, 'utf8')).state !== 'complete' && Date.now() < deadline;
    )
      await sleep(100);
    expect(JSON.parse(await readFile(record, 'utf8'))).toMatchObject({ state: 'complete', dataset: `${p.pool}/${rel}` });
    expect(daemon.output()).not.toMatch(/ERROR/);
  });

  it('a level that is a symbolic link is never gone through: refused, nothing made', async () => {
    const file = await config('layout.json');
    const rel = `exp5/sampleE/${RUN.replace('0001', '0005')}`;
    await makeRun(rel);
    await symlink(join(p.mount, 'exp5'), join(p.mount, 'exp6'));
    const r = await cli(['--config', file, 'handle', join(p.mount, 'exp6', 'sampleE', RUN.replace('0001', '0005'))], {
      stateDir: p.stateDir,
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/exp6" is a symbolic link, not a directory, or gone; the run is left as it is/);
    expect((await datasets(p.pool)).some((d) => d.name.startsWith(`${p.pool}/exp6`) || d.name.startsWith(`${p.pool}/exp5`))).toBe(false);
    await expectWhole(rel);
  });

  it('killed past its commit point, with its journal lost: recover finds the run by the survey of its depth and finishes it', async () => {
    const rel = `exp7/sampleF/${RUN.replace('0001', '0007')}`;
    await makeRun(rel);
    const file = await writeConfig(
      p,
      fastPlugins({ more: [['fault-injection', { killAt: 'swap/mount-in-place', names: [rel] }]] }),
      {},
      'kill.json',
    );
    const raw = JSON.parse(await readFile(file, 'utf8')) as { roots: Record<string, unknown>[] };
    raw.roots[0]!.layout = { depth: 3, levels: LEVELS };
    await writeFile(file, JSON.stringify(raw));
    const killed = await cli(['--config', file, 'handle', join(p.mount, rel)], { stateDir: p.stateDir });
    expect(killed.stderr).toContain('fault injection: sending SIGKILL');
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/${rel}`)?.state).toBe('swapped');
    await rm(p.stateDir, { recursive: true, force: true });
    const r = await cli(['--config', await config('layout.json'), 'recover'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/${rel}`)).toMatchObject({
      mountpoint: join(p.mount, rel),
      mounted: 'yes',
      state: 'live',
    });
    await expectWhole(rel);
  });
});
