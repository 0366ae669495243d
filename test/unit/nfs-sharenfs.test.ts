/**
 * nfs-exports in sharenfs mode names datasets as the job record and the survey give them, never
 * derived from the root and the directory's name: a stand-in zfs logs every call.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHooks } from '../../src/core/hooks.js';
import { loadPlugins } from '../../src/core/loader.js';
import { JobImpl, newRecord } from '../../src/core/job.js';
import { Journal, jobId } from '../../src/core/journal.js';
import { createLogger } from '../../src/core/logger.js';
import type { RootContext, Survey } from '../../src/core/index.js';
import plugin from '../../plugins/nfs-exports/index.js';
import zfsPlugin from '../../plugins/zfs/index.js';
import { withRuns } from '../helpers/runs.js';

let dir: string;
let zfsLog: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nfs-sharenfs-'));
  zfsLog = join(dir, 'zfs.log');
  await mkdir(join(dir, 'state'), { mode: 0o700 });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A zfs that logs its arguments, lists `tank/root` and `tank/root/a` with sharenfs off, and sets anything. */
async function fakeZfs(): Promise<string> {
  const script = join(dir, 'zfs');
  await writeFile(
    script,
    [
      '#!/bin/sh',
      `printf '%s\\n' "$*" >> '${zfsLog}'`,
      `if [ "$1" = list ]; then printf 'tank/root\\toff\\ntank/root/a\\toff\\n'; fi`,
      'exit 0',
      '',
    ].join('\n'),
  );
  await chmod(script, 0o755);
  return script;
}

async function setup() {
  const hooks = createHooks();
  const log = createLogger([]);
  const root: RootContext = withRuns(
    { rootfs: 'tank/root', rootdir: '/srv/root', log, dryRun: false, stateDir: join(dir, 'state') },
    hooks,
  );
  // zfs runs with the zfs plugin's command, the one zfs of the root.
  const zfsOptions = zfsPlugin.options!.parse({ command: await fakeZfs() });
  await zfsPlugin.apply(hooks, { options: zfsOptions, root, log, dryRun: false, stateDir: root.stateDir });
  const options = plugin.options!.parse({ mode: 'sharenfs', sharenfs: 'rw=@10.0.0.0/8' });
  await plugin.apply(hooks, { options, root, log, dryRun: false, stateDir: root.stateDir });
  const calls = async (): Promise<string[]> => (await readFile(zfsLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const job = (filesystem?: string): JobImpl => {
    const record = { ...newRecord(root, jobId(root.rootdir, 'd'), 'd'), ...(filesystem !== undefined ? { filesystem } : {}) };
    const j = new JobImpl(root, record, new Journal(root.stateDir), new AbortController().signal);
    j.phase = 'publish';
    return j;
  };
  return { hooks, root, calls, job };
}

describe('nfs-exports, sharenfs mode: dataset names', () => {
  it('publish sets sharenfs on the dataset the job record names', async () => {
    const { hooks, calls, job } = await setup();
    await hooks.publish.promise(job('tank/named-by-the-record'));
    expect(await calls()).toEqual(['set sharenfs=rw=@10.0.0.0/8 tank/named-by-the-record']);
  });

  it('publish refuses a job with no recorded filesystem, naming the phase that records it', async () => {
    const { hooks, calls, job } = await setup();
    await expect(hooks.publish.promise(job())).rejects.toThrow(
      'no filesystem was recorded for this job (the provision phase records it), so there is no dataset to set sharenfs on',
    );
    expect(await calls()).toEqual([]);
  });

  it('sync takes the names from the survey, and reads every sharenfs value in one zfs list', async () => {
    const { hooks, root, calls } = await setup();
    const survey: Survey = {
      directories: new Set(),
      filesystems: new Map([
        ['a', { mountpoint: '/srv/root/a', mounted: true, filesystem: 'tank/root/a' }],
        ['b', { mountpoint: '/srv/root/b', mounted: true, filesystem: 'tank/named-by-the-survey' }],
        ['c', { mountpoint: '/srv/root/c', mounted: false, filesystem: 'tank/root/c' }],
      ]),
      leftovers: new Set(),
      ignored: new Set(),
    };
    await hooks.sync.promise(root, survey);
    expect(await calls()).toEqual([
      'list -H -r -t filesystem -o name,sharenfs tank/root',
      'set sharenfs=rw=@10.0.0.0/8 tank/root/a',
      'set sharenfs=rw=@10.0.0.0/8 tank/named-by-the-survey',
    ]);
  });
});

describe('nfs-exports, sharenfs mode: the zfs command', () => {
  it('zfsCommand, removed, is refused in one line that says where zfs is named now', async () => {
    const log = createLogger([]);
    const load = loadPlugins([['nfs-exports', { mode: 'sharenfs', zfsCommand: '/usr/local/sbin/zfs' }]], {
      hooks: createHooks(),
      root: { rootfs: 'tank/root', rootdir: '/srv/root' },
      log,
      dryRun: true,
      stateDir: join(dir, 'state'),
      baseDir: dir,
      where: 'config t.yaml: roots[0].plugins',
    });
    await expect(load).rejects.toThrow(
      "config t.yaml: roots[0].plugins[0][1]: zfsCommand: removed: sharenfs mode runs zfs with the zfs plugin's option command; write it there (['zfs', { command: ... }]) and drop zfsCommand",
    );
  });
});
