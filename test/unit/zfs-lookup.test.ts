/**
 * A dataset lookup that zfs answers with an I/O error is tried again (zfs-fuse did so once in a
 * burst, and the job failed for it); "does not exist" and any other error are answered at once.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Zfs } from '../../plugins/zfs/zfs.js';
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
