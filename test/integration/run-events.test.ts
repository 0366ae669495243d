/**
 * A run's events on a real pool: a site plugin says when a run is complete (a DONE file holding
 * the moment), notify's command hears run.converted and run.complete, the zfs plugin snapshots the
 * run named after that moment (at completion for a run converted before, at the end of the
 * conversion for a run complete before it) and sets readonly=on once readonlyAfterSeconds have
 * passed since, and `history` shows all of it.
 */
import { readFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { scaled } from '../helpers/time.js';

/** Notes a run complete when it holds DONE (its text: when), before its conversion (wait) or after (sync). */
const SITE_PLUGIN = `
import { readFile } from 'node:fs/promises';
const done = (path) => readFile(path + '/DONE', 'utf8').then((t) => t.trim(), () => undefined);
export default {
  name: 'done-file',
  apply(hooks) {
    hooks.wait.tapPromise('done-file', async (job) => {
      const at = await done(job.path);
      if (at) await job.root.runs.note(job.name, { kind: 'complete', at, note: 'DONE', policy: 'done-file' });
      return undefined;
    });
    hooks.sync.tapPromise('done-file', async (root) => {
      for (const run of await root.runs.list()) {
        const at = run.completion ? undefined : await done(root.rootdir + '/' + run.name);
        if (at) await root.runs.note(run.name, { kind: 'complete', at, note: 'DONE', policy: 'done-file' });
      }
    });
  },
};
`;

const DELAY_S = scaled(4000) / 1000;

let p: TestPool;
let config: string;
let told: string;

beforeAll(async () => {
  p = await createPool('runevents');
  const plugin = join(p.work, 'done-file.mjs');
  await writeFile(plugin, SITE_PLUGIN, { mode: 0o644 });
  told = join(p.work, 'told');
  config = await writeConfig(p, [
    [plugin, {}],
    ...fastPlugins({
      zfs: { snapshotOnComplete: true, readonlyAfterSeconds: DELAY_S },
      more: [['notify', { command: ['/bin/sh', '-c', `cat >> '${told}'`], on: [], events: ['run.converted', 'run.complete'] }]],
    }),
  ]);
});
afterAll(async () => {
  await p?.destroy();
});

const prop = async (dataset: string, name: string): Promise<string> => (await zfs('get', '-H', '-o', 'value', name, dataset)).trim();
const snapshots = async (dataset: string): Promise<string[]> =>
  (await zfs('list', '-H', '-t', 'snapshot', '-o', 'name', '-r', dataset)).split('\n').filter((l) => l !== '');
/** Whether a file can be made in `dir` (zfs-fuse's `zfs get readonly` says "off temporary" even when it is on). */
const writable = async (dir: string): Promise<boolean> =>
  writeFile(join(dir, '.probe'), '').then(
    () => rm(join(dir, '.probe')).then(() => true),
    (error: NodeJS.ErrnoException) => (error.code === 'EROFS' ? false : Promise.reject(error)),
  );
const events = async (): Promise<Record<string, unknown>[]> =>
  (await readFile(told, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('run events', () => {
  it('tells run.converted and run.complete, snapshots at completion, sets readonly after the delay, and history shows it', async () => {
    // "early" says it is complete before its conversion; "late" after it.
    const early = join(p.mount, 'early');
    const late = join(p.mount, 'late');
    await mkdir(early);
    await mkdir(late);
    await writeFile(join(early, 'data'), 'cycle 1\n');
    await writeFile(join(late, 'data'), 'cycle 1\n');
    const earlyAt = '2026-12-07T10:15:00.000Z';
    await writeFile(join(early, 'DONE'), `${earlyAt}\n`);
    for (const dir of [early, late]) {
      const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
      expect(r.exitCode, r.stderr).toBe(0);
    }
    // early: snapshotted at the end of its conversion, named after its completion.
    expect(await snapshots(`${p.pool}/early`)).toEqual([`${p.pool}/early@complete-20261207T101500Z`]);
    expect(await snapshots(`${p.pool}/late`)).toEqual([]);

    // A late writer (a demultiplexer) writes into the converted run, then the run says it is complete.
    await writeFile(join(late, 'demux.txt'), 'late\n');
    const lateAt = new Date().toISOString();
    await writeFile(join(late, 'DONE'), `${lateAt}\n`);
    const first = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(first.exitCode, first.stderr).toBe(0);
    const lateSnapshot = `complete-${lateAt.replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '')}`;
    expect(await snapshots(`${p.pool}/late`)).toEqual([`${p.pool}/late@${lateSnapshot}`]);
    // early completed long ago: readonly at this sweep; late not before its delay.
    expect(await writable(early)).toBe(false);
    if (Date.now() - Date.parse(lateAt) < DELAY_S * 1000) expect(await writable(late)).toBe(true);

    await sleep(Math.max(0, Date.parse(lateAt) + DELAY_S * 1000 - Date.now()) + 200);
    const second = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(second.exitCode, second.stderr).toBe(0);
    expect(await writable(late)).toBe(false);
    const lateSince = await prop(`${p.pool}/late`, 'org.zfs-dynamic-creator:readonly-since');
    expect(Date.parse(lateSince) - Date.parse(lateAt)).toBeGreaterThanOrEqual(DELAY_S * 1000);

    // notify's command: each event once, the run as it stood.
    const heard = await events();
    expect(heard.map((e) => `${e.event} ${e.name}`)).toEqual([
      'run.complete early',
      'run.converted early',
      'run.converted late',
      'run.complete late',
    ]);
    expect(heard[0]).toMatchObject({ state: 'complete', dataset: null, completedAt: earlyAt, policy: 'done-file', path: early });
    expect(heard[1]).toMatchObject({ state: 'complete', dataset: `${p.pool}/early`, completedAt: earlyAt });
    expect(heard[2]).toMatchObject({ state: 'converted', dataset: `${p.pool}/late`, completedAt: null });
    expect(heard[3]).toMatchObject({ state: 'complete', dataset: `${p.pool}/late`, completedAt: lateAt, note: 'DONE' });

    const h = await cli(['--config', config, 'history', '--json'], { stateDir: p.stateDir });
    expect(h.exitCode, h.stderr).toBe(0);
    const conversions = (JSON.parse(h.stdout) as { roots: { conversions: Record<string, unknown>[] }[] }).roots[0]!.conversions;
    expect(conversions).toEqual([
      expect.objectContaining({
        dataset: `${p.pool}/early`,
        completed: earlyAt,
        snapshot: 'complete-20261207T101500Z',
        'readonly-since': expect.any(String),
      }),
      expect.objectContaining({ dataset: `${p.pool}/late`, completed: lateAt, snapshot: lateSnapshot, 'readonly-since': lateSince }),
    ]);
    const text = await cli(['--config', config, 'history'], { stateDir: p.stateDir });
    expect(text.stdout).toContain(`run completed ${lateAt}, snapshot @${lateSnapshot}, readonly since ${lateSince}`);
  });
});
