/**
 * Lookups a burst asks for at once are answered together, each as fresh as its own would be:
 * the zfs plugin's dataset lookups in the filter (one `zfs list -d 1` for all but the first) and
 * the scans of /proc for holders at the end of the quiet periods (one pass for all waiting).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdersOf } from '../../src/util/holders.js';
import { InodeIndex } from '../../src/util/inodes.js';
import { Zfs } from '../../plugins/zfs/zfs.js';
import type { Logger } from '../../src/index.js';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'shared-lookups-'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const quiet: Logger = {
  debug: () => undefined,
  info: () => undefined,
  notice: () => undefined,
  warn: () => undefined,
  error: () => undefined,
} as unknown as Logger;

/** A fake zfs: tank, tank/a (a filesystem in its grace period), tank/vol (a volume); logs every call. */
async function fakeZfs(): Promise<{ command: string; calls: () => Promise<string[]> }> {
  const dir = await mkdtemp(join(base, 'zfs-'));
  const log = join(dir, 'calls');
  const command = join(dir, 'zfs');
  const row = (name: string, mountpoint: string, state: string, type: string): string =>
    `${name}\\t${mountpoint}\\tyes\\t${state}\\t-\\t-\\t-\\t${type}`;
  await writeFile(
    command,
    [
      '#!/bin/bash',
      `echo "$*" >> ${log}`,
      'last="${@: -1}"',
      'sleep 0.2',
      'if [ "$3" = "-r" ]; then',
      `  printf '%b\\n' '${row('tank', '/tank', '-', 'filesystem')}' '${row('tank/a', '/tank/a', 'swapped', 'filesystem')}' '${row('tank/vol', '-', '-', 'volume')}'`,
      '  exit 0',
      'fi',
      'case "$last" in',
      `  tank/a) printf '%b\\n' '${row('tank/a', '/tank/a', 'swapped', 'filesystem')}' | cut -f1-7 ;;`,
      `  tank/vol) echo "cannot open '$last': operation not applicable to datasets of this type" >&2; exit 1 ;;`,
      `  *) echo "cannot open '$last': dataset does not exist" >&2; exit 1 ;;`,
      'esac',
    ].join('\n'),
  );
  await chmod(command, 0o755);
  return { command, calls: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean) };
}

describe('Zfs.child', () => {
  it('answers a burst of lookups with one listing after the first, each as get would', async () => {
    const fake = await fakeZfs();
    const zfs = new Zfs(fake.command, quiet, 1, 10);
    const names = ['a', 'b', 'c', 'd', 'e'];
    const answers = await Promise.all(names.map((n) => zfs.child('tank', n)));
    expect(answers[0]).toMatchObject({ name: 'tank/a', state: 'swapped', mounted: true, mountpoint: '/tank/a' });
    expect(answers.slice(1)).toEqual([undefined, undefined, undefined, undefined]);
    const calls = await fake.calls();
    expect(calls).toHaveLength(2);
    expect(calls[0]).toMatch(/^list -H -t filesystem -o \S+ tank\/a$/);
    expect(calls[1]).toMatch(/^list -H -r -d 1 -t filesystem,volume -o \S+,type tank$/);
    // The same answers as get, one by one.
    for (const [i, n] of names.entries()) expect(await zfs.get(`tank/${n}`)).toEqual(answers[i]);
  });

  it('a child that is not a filesystem, in a batch, is asked for on its own (the same error as get)', async () => {
    const fake = await fakeZfs();
    const zfs = new Zfs(fake.command, quiet, 1, 10);
    const [first, vol, a] = await Promise.allSettled([zfs.child('tank', 'x'), zfs.child('tank', 'vol'), zfs.child('tank', 'a')]);
    expect(first).toEqual({ status: 'fulfilled', value: undefined });
    expect(vol.status).toBe('rejected');
    expect(String((vol as PromiseRejectedResult).reason)).toMatch(/not applicable/);
    expect(a).toMatchObject({ status: 'fulfilled', value: { name: 'tank/a', state: 'swapped' } });
    expect((await fake.calls()).filter((c) => c.endsWith(' tank/vol'))).toHaveLength(1);
  });

  it('a lookup asked while a listing runs waits for the next one', async () => {
    const fake = await fakeZfs();
    const zfs = new Zfs(fake.command, quiet, 1, 10);
    const first = zfs.child('tank', 'b');
    await new Promise((ok) => setTimeout(ok, 50));
    const [second, third] = [zfs.child('tank', 'a'), zfs.child('tank', 'c')];
    expect(await Promise.all([first, second, third])).toEqual([undefined, expect.objectContaining({ name: 'tank/a' }), undefined]);
    const calls = await fake.calls();
    expect(calls).toHaveLength(2);
    expect(calls[1]).toMatch(/-r -d 1/);
  });
});

describe('holdersOf, asked for by many at once', () => {
  it('gives each caller the holders of its own tree only', async () => {
    const dirs = await Promise.all(
      ['one', 'two', 'three'].map(async (n) => {
        const d = join(base, n);
        await mkdir(d);
        return d;
      }),
    );
    const holders: ResultPromise[] = [
      execa('sleep', ['30'], { cwd: dirs[0], reject: false }),
      execa('sleep', ['30'], { cwd: dirs[1], reject: false }),
    ];
    try {
      await new Promise((ok) => setTimeout(ok, 300));
      const indexOf = (path: string): InodeIndex => {
        const st = statSync(path);
        const index = new InodeIndex(st.dev);
        index.add(st.ino);
        return index;
      };
      const answers = await Promise.all([...dirs, dirs[0]!].map((d) => holdersOf(indexOf(d))));
      expect(answers.map((a) => a.map((h) => h.pid))).toEqual([[holders[0]!.pid], [holders[1]!.pid], [], [holders[0]!.pid]]);
      expect(answers[0]).toEqual([{ pid: holders[0]!.pid, command: 'sleep', how: 'cwd', isDirectory: true, path: dirs[0] }]);
      // Alone, the same answer.
      expect(await holdersOf(indexOf(dirs[1]!))).toEqual(answers[1]);
    } finally {
      for (const h of holders) h.kill();
      await Promise.all(holders);
    }
  });
});
