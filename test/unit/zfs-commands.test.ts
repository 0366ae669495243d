/**
 * A dataset lookup that zfs answers with an I/O error is tried again (zfs-fuse did so once in a
 * burst, and the job failed for it); "does not exist" and any other error are answered at once.
 *
 * Zfs.setAll: several properties in one `zfs set` where zfs takes them (OpenZFS), else one each.
 *
 * On zfs-fuse, commands that mount take turns (two mounts at once can wedge its daemon for good);
 * elsewhere, and for every other command, they run as they come.
 */
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zfs, mounts } from '../../plugins/zfs/zfs.js';
import type { Logger } from '../../src/index.js';

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'zfs-lookup-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

function logger(lines: string[]): Logger {
  const add = (m: string): void => void lines.push(m);
  return { debug: add, info: add, notice: add, warn: add, error: add } as unknown as Logger;
}

/** A zfs that fails its first `failures` calls with `message`, then lists tank/x; counts calls. */
async function flakyZfs(failures: number, message: string): Promise<{ command: string; calls: () => Promise<number> }> {
  const dir = await mkdtemp(join(base, 'zfs-'));
  const count = join(dir, 'count');
  const command = join(dir, 'zfs');
  await writeFile(count, '0');
  await writeFile(
    command,
    [
      '#!/bin/bash',
      `n=$(( $(cat ${count}) + 1 )); echo $n > ${count}`,
      `if [ $n -le ${failures} ]; then echo "${message}" >&2; exit 1; fi`,
      'printf "tank/x\\t/tank/x\\tyes\\tlive\\t-\\t-\\n"',
    ].join('\n'),
  );
  await chmod(command, 0o755);
  return { command, calls: async () => Number((await readFile(count, 'utf8')).trim()) };
}

describe('Zfs.get', () => {
  it('tries again after an I/O error, and says so', async () => {
    const fake = await flakyZfs(2, "cannot open 'tank/x': I/O error");
    const lines: string[] = [];
    const info = await new Zfs(fake.command, logger(lines), 1, 10).get('tank/x');
    expect(info).toMatchObject({ name: 'tank/x', mountpoint: '/tank/x', mounted: true, state: 'live' });
    expect(await fake.calls()).toBe(3);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^zfs list tank\/x: cannot open 'tank\/x': I\/O error; trying again in 250 ms \(try 2 of 4\)$/);
  });

  it('gives up after four tries', async () => {
    const fake = await flakyZfs(10, "cannot open 'tank/x': I/O error");
    await expect(new Zfs(fake.command, logger([]), 1, 10).get('tank/x')).rejects.toThrow(/I\/O error/);
    expect(await fake.calls()).toBe(4);
  });

  it('answers "does not exist" at once, and fails other errors at once', async () => {
    const missing = await flakyZfs(10, "cannot open 'tank/x': dataset does not exist");
    expect(await new Zfs(missing.command, logger([]), 1, 10).get('tank/x')).toBeUndefined();
    expect(await missing.calls()).toBe(1);
    const denied = await flakyZfs(10, 'permission denied');
    await expect(new Zfs(denied.command, logger([]), 1, 10).get('tank/x')).rejects.toThrow(/permission denied/);
    expect(await denied.calls()).toBe(1);
  });
});

/** A zfs that records each call's arguments, one per line (NUL-separated), and answers `version` as `flavour` does. */
async function recordingZfs(flavour: 'openzfs' | 'zfs-fuse'): Promise<{ command: string; calls: () => Promise<string[][]> }> {
  const dir = await mkdtemp(join(base, 'zfs-'));
  const log = join(dir, 'calls');
  const command = join(dir, 'zfs');
  await writeFile(log, '');
  const version =
    flavour === 'openzfs'
      ? 'printf "zfs-2.3.2-2~bpo12+2\\nzfs-kmod-2.3.2-2~bpo12+2\\n"; exit 0'
      : 'echo "unrecognized command \'version\'" >&2; exit 2';
  await writeFile(
    command,
    ['#!/bin/bash', `printf '%s\\0' "$@" >> ${log}; echo >> ${log}`, `if [ "$1" = version ]; then ${version}; fi`].join('\n'),
  );
  await chmod(command, 0o755);
  return {
    command,
    calls: async () =>
      (await readFile(log, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split('\0').slice(0, -1)),
  };
}

describe('Zfs.setAll', () => {
  const properties = { 'org.x:converted': '2026-11-27T00:00:00.000Z', 'org.x:note': 'a=b c', 'org.x:state': 'live' };

  it('sets them in one zfs set on OpenZFS', async () => {
    const fake = await recordingZfs('openzfs');
    const zfs = new Zfs(fake.command, logger([]), 1, 10);
    await zfs.setAll('tank/run 1', properties);
    await zfs.setAll('tank/run 2', properties);
    expect(await fake.calls()).toEqual([
      ['version'],
      ['set', 'org.x:converted=2026-11-27T00:00:00.000Z', 'org.x:note=a=b c', 'org.x:state=live', 'tank/run 1'],
      ['set', 'org.x:converted=2026-11-27T00:00:00.000Z', 'org.x:note=a=b c', 'org.x:state=live', 'tank/run 2'],
    ]);
  });

  it('sets them one by one, in order, where zfs set takes one (zfs-fuse)', async () => {
    const fake = await recordingZfs('zfs-fuse');
    await new Zfs(fake.command, logger([]), 1, 10).setAll('tank/run', properties);
    expect(await fake.calls()).toEqual([
      ['version'],
      ['set', 'org.x:converted=2026-11-27T00:00:00.000Z', 'tank/run'],
      ['set', 'org.x:note=a=b c', 'tank/run'],
      ['set', 'org.x:state=live', 'tank/run'],
    ]);
  });

  it('needs no probe for a single property', async () => {
    const fake = await recordingZfs('openzfs');
    await new Zfs(fake.command, logger([]), 1, 10).setAll('tank/run', { 'org.x:state': 'swapped' });
    expect(await fake.calls()).toEqual([['set', 'org.x:state=swapped', 'tank/run']]);
  });
});

describe('mounts', () => {
  it('knows the commands that mount a filesystem', () => {
    expect(mounts(['create', '-o', 'mountpoint=/r/.h/x', 'tank/x'])).toBe(true);
    expect(mounts(['create', 'tank/x'])).toBe(true);
    expect(mounts(['mount', 'tank/x'])).toBe(true);
    expect(mounts(['set', 'mountpoint=/r/x', 'tank/x'])).toBe(true);
    expect(mounts(['set', 'org.x:a=1', 'canmount=on', 'tank/x'])).toBe(true);
    expect(mounts(['inherit', 'mountpoint', 'tank/x'])).toBe(true);
  });

  it('and those that do not, whatever the dataset is called', () => {
    expect(mounts(['set', 'quota=1G', 'tank/mountpoint=x'])).toBe(false);
    expect(mounts(['inherit', 'org.x:aside', 'tank/mountpoint'])).toBe(false);
    expect(mounts(['destroy', 'tank/x'])).toBe(false);
    expect(mounts(['list', '-H', '-o', 'mountpoint', 'tank/x'])).toBe(false);
    expect(mounts(['snapshot', 'tank/x@mountpoint'])).toBe(false);
  });
});

/**
 * A zfs whose every command but `version` takes 0.3 s and records whether another one was in
 * flight meanwhile (mkdir is atomic: it fails while the other holds the directory).
 */
async function overlapZfs(
  flavour: 'openzfs' | 'zfs-fuse',
): Promise<{ command: string; overlaps: () => Promise<number>; runs: () => Promise<number> }> {
  const dir = await mkdtemp(join(base, 'zfs-'));
  const command = join(dir, 'zfs');
  const version =
    flavour === 'openzfs'
      ? 'printf "zfs-2.3.2-2~bpo12+2\\nzfs-kmod-2.3.2-2~bpo12+2\\n"; exit 0'
      : 'echo "unrecognized command \'version\'" >&2; exit 2';
  await writeFile(
    command,
    [
      '#!/bin/bash',
      `if [ "$1" = version ]; then ${version}; fi`,
      `if mkdir ${dir}/inflight 2>/dev/null; then sleep 0.3; rmdir ${dir}/inflight; else echo x >> ${dir}/overlaps; sleep 0.3; fi`,
      `echo x >> ${dir}/runs`,
    ].join('\n'),
  );
  await chmod(command, 0o755);
  const lines = (f: string) => async () => (await readFile(join(dir, f), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
  return { command, overlaps: lines('overlaps'), runs: lines('runs') };
}

/** Six creates through the built plugin (npm run build) in a process of its own. */
const otherProcess = `
  const { Zfs } = await import(${JSON.stringify(pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'plugins', 'zfs', 'zfs.js')).href)});
  const quiet = { debug() {}, info() {}, notice() {}, warn() {}, error() {} };
  const zfs = new Zfs(process.env.FAKE, quiet, 1, 10, process.env.STATE);
  await Promise.all([0, 1, 2, 3, 4, 5].map((i) => zfs.create('tank/other ' + i, {})));
`;

describe('zfs-fuse: one mount at a time', () => {
  const six = (zfs: Zfs, act: (zfs: Zfs, name: string) => Promise<unknown>) =>
    Promise.all(Array.from({ length: 6 }, (_, i) => act(zfs, `tank/run ${i}`)));

  it('creates, mounts and mountpoint changes on zfs-fuse take turns, in a process and across processes of one state directory', async () => {
    const fake = await overlapZfs('zfs-fuse');
    const stateDir = await mkdtemp(join(base, 'state-'));
    // Two objects, as a daemon's two roots would have, and another process doing the same.
    const a = new Zfs(fake.command, logger([]), 1, 10, stateDir);
    const b = new Zfs(fake.command, logger([]), 1, 10, stateDir);
    const other = execa(process.execPath, ['--input-type=module', '-e', otherProcess], { env: { FAKE: fake.command, STATE: stateDir } });
    await Promise.all([
      six(a, (z, n) => z.create(n, { mountpoint: `/r/.h/${n}` })),
      six(b, (z, n) => z.inherit(n, 'mountpoint')),
      six(a, (z, n) => z.mount(n)),
      other,
    ]);
    expect(await fake.runs()).toBe(24);
    expect(await fake.overlaps()).toBe(0);
    // Each turn is given back: nothing is left among the locks.
    expect(await readdir(join(stateDir, 'locks'))).toEqual([]);
  });

  it('commands that mount nothing do not wait for a turn on zfs-fuse', async () => {
    const fake = await overlapZfs('zfs-fuse');
    const zfs = new Zfs(fake.command, logger([]), 1, 10, await mkdtemp(join(base, 'state-')));
    await six(zfs, (z, n) => z.set(n, 'quota', '1G'));
    expect(await fake.runs()).toBe(6);
    expect(await fake.overlaps()).toBeGreaterThan(0);
  });

  it('OpenZFS mounts as they come', async () => {
    const fake = await overlapZfs('openzfs');
    const zfs = new Zfs(fake.command, logger([]), 1, 10, await mkdtemp(join(base, 'state-')));
    await six(zfs, (z, n) => z.create(n, {}));
    expect(await fake.runs()).toBe(6);
    expect(await fake.overlaps()).toBeGreaterThan(0);
  });
});
