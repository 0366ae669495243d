/**
 * Issue 19: the catch-up keeps extended attributes and POSIX ACLs as the bulk copy does (rsync
 * -aHAX). zfs-fuse has neither, so this runs on the OpenZFS lane (scripts/openzfs-lane.sh
 * test/openzfs/siege-remove.test.ts).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliSpawn, createPool, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { makeTree } from '../helpers/tree.js';
import { helperPath } from '../helpers/state.js';
import { scaled } from '../helpers/time.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('ozsr', 512);
  await zfs('set', 'acltype=posixacl', p.pool);
  await zfs('set', 'xattr=sa', p.pool);
});
afterAll(async () => {
  await p?.destroy();
});

/** getfattr and getfacl of `names` under `dir` (paths relative to it). */
async function metadata(dir: string, names: readonly string[]): Promise<{ xattrs: string; acls: string }> {
  const xattrs = (await execa('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', ...names], { cwd: dir })).stdout;
  const acls = (await execa('getfacl', ['-P', '-n', ...names], { cwd: dir })).stdout;
  return { xattrs, acls };
}

describe('the catch-up on OpenZFS', () => {
  it('a file and a directory made in the original during the grace period arrive with their xattrs and POSIX ACLs', async () => {
    const dir = join(p.mount, 'late acls');
    await makeTree(dir, 6);
    const config = await writeConfig(
      p,
      fastPlugins({ quiet: { quietSeconds: 0 }, rsync: { graceSeconds: scaled(3000) / 1000, maxGraceSeconds: scaled(60_000) / 1000 } }),
    );
    const child = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    let log = '';
    child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    for (let t = Date.now(); !/verified: all|the cleanup waits/.test(log); await sleep(50)) {
      if (child.exitCode !== null || Date.now() - t > scaled(60_000)) throw new Error(`the swap never finished:\n${log}`);
    }
    // Late changes to the original (as through a descriptor opened before the swap).
    const aside = helperPath(p, 'late acls', 'orig');
    await writeFile(join(aside, 'late'), 'late file\n');
    await execa('setfattr', ['-n', 'user.origin', '-v', 'late', join(aside, 'late')]);
    await execa('setfacl', ['-m', 'u:4242:r,g:4343:rw,m::rw', join(aside, 'late')]);
    await mkdir(join(aside, 'late-dir'));
    await execa('setfacl', ['-d', '-m', 'u:4242:rwx,g:4343:rx', join(aside, 'late-dir')]);
    await execa('setfattr', ['-n', 'user.on-a-dir', '-v', 'yes', join(aside, 'late-dir')]);
    await writeFile(join(aside, 'late-dir', 'inherits'), 'x');
    const names = ['late', 'late-dir', 'late-dir/inherits'];
    const meta = await metadata(aside, names);
    expect(meta.xattrs).toContain('user.origin=0x6c617465');
    expect(meta.acls).toContain('user:4242:r--');
    expect(meta.acls).toContain('default:user:4242:rwx');

    const r = await child;
    expect(log).toMatch(/late change\(s\) to the original were caught up/);
    expect(log).toContain('converted into');
    expect(r.exitCode).toBe(0);
    expect(await metadata(dir, names)).toEqual(meta);
  });
});
