/**
 * The block-cloning probe on the machine's own ZFS: zfs-fuse (pool version 23) knows no block
 * cloning, so the probe says no and the rsync path is kept; kernel OpenZFS 2.2+ says yes (the
 * OpenZFS lane, test/openzfs/clone.test.ts, checks the cloning itself).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloneTree, probeBlockCloning } from '../../plugins/rsync/clone.js';
import { detectZfs } from '../../plugins/zfs/implementation.js';
import { verifyTree } from '../helpers/verify.js';
import { createPool, zfs, type TestPool } from '../helpers/zfs.js';
import { makeTree } from '../helpers/tree.js';

let p: TestPool;
let openzfs: boolean;

beforeAll(async () => {
  p = await createPool('probe');
  await zfs('create', `${p.pool}/staging`);
  // zfs-fuse has no `zfs version`; OpenZFS 0.8 and later have
  openzfs = (await execa('zfs', ['version'], { reject: false })).exitCode === 0;
});
afterAll(async () => {
  await p?.destroy();
});

describe('probeBlockCloning on this machine', () => {
  it('knows which ZFS this is', async () => {
    const z = await detectZfs();
    expect(z.kind).toBe(openzfs ? 'openzfs' : 'zfs-fuse');
    if (openzfs) expect(z.version).toMatch(/^2\.\d+\.\d+/);
  });

  it('says no on zfs-fuse (yes on kernel OpenZFS), and leaves no probe file behind', async () => {
    const r = await probeBlockCloning({ pool: p.pool, sourceDir: p.mount, targetDir: join(p.mount, 'staging') });
    if (openzfs) expect(r.clones).toBe(true);
    else expect(r).toEqual({ clones: false, reason: 'this ZFS does not know block cloning (zfs-fuse, or OpenZFS before 2.2)' });
    expect((await readdir(p.mount)).filter((n) => n.includes('probe'))).toEqual([]);
    expect(await readdir(join(p.mount, 'staging'))).toEqual([]);
  });

  it('cloneTree then rsync -aHAX gives a verified copy where blocks cannot be shared', async () => {
    const src = join(p.mount, 'tree');
    await makeTree(src, 30, 5000);
    const dst = join(p.mount, 'staging');
    const r = await cloneTree(src, dst, new AbortController().signal);
    expect(r.files + r.skipped).toBe(30);
    const out = (await execa('rsync', ['-aHAX', '--numeric-ids', '--itemize-changes', '--', `${src}/`, `${dst}/`])).stdout;
    expect(out.split('\n').filter((l) => l.startsWith('>f')).length).toBe(r.skipped);
    expect((await verifyTree(src, dst, { content: true })).differences).toEqual([]);
  });
});
