/**
 * Block cloning on kernel OpenZFS (the OpenZFS lane): the probe says yes between two datasets of
 * a pool, cloneTree shares the blocks (bclonesaved grows by the data, the pool's allocation
 * does not), and rsync -aHAX afterwards sends no file data but fixes every piece of metadata.
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloneTree, probeBlockCloning } from '../../plugins/rsync/clone.js';
import { verifyTree } from '../helpers/verify.js';
import { createPool, zfs, type TestPool } from '../helpers/zfs.js';
import { describeTree } from '../helpers/tree.js';

let p: TestPool;
let target: string;

async function poolNumber(property: string): Promise<number> {
  await execa('zpool', ['sync', p.pool]);
  return Number((await execa('zpool', ['get', '-Hp', '-o', 'value', property, p.pool])).stdout.trim());
}

beforeAll(async () => {
  p = await createPool('clone', 512);
  await zfs('set', 'acltype=posixacl', p.pool);
  await zfs('set', 'xattr=sa', p.pool);
  await zfs('create', `${p.pool}/target`);
  target = join(p.mount, 'target');
});
afterAll(async () => {
  await p?.destroy();
});

describe('block cloning', () => {
  it('the probe says yes between the root dataset and another one, and leaves no probe file', async () => {
    const r = await probeBlockCloning({ pool: p.pool, sourceDir: p.mount, targetDir: target });
    expect(r).toMatchObject({ clones: true });
    expect(['enabled', 'active']).toContain(r.feature);
    expect(r.savedAfter! - r.savedBefore!).toBeGreaterThanOrEqual(1 << 20);
    expect((await readdir(p.mount)).filter((n) => n.includes('probe'))).toEqual([]);
    expect(await readdir(target)).toEqual([]);
  });

  it('cloneTree shares the blocks; rsync -aHAX then sends no data and the copy verifies, metadata included', async () => {
    const src = join(p.mount, 'tree');
    await mkdir(join(src, 'sub', 'deeper'), { recursive: true });
    let bytes = 0;
    for (let i = 0; i < 6; i++) {
      const data = randomBytes((4 << 20) + i * 131_072);
      bytes += data.length;
      await writeFile(join(src, i % 2 ? 'sub' : '.', `big${i}`), data);
    }
    for (let i = 0; i < 50; i++) await writeFile(join(src, 'sub', 'deeper', `small${i}`), randomBytes(100 + i * 37));
    await link(join(src, 'big0'), join(src, 'sub', 'big0 again'));
    await symlink('big0', join(src, 'link'));
    await execa('mkfifo', [join(src, 'fifo')]);
    await execa('setfattr', ['-n', 'user.origin', '-v', 'hiseq', join(src, 'big0')]);
    await execa('setfacl', ['-m', 'u:4242:r', join(src, 'sub', 'big1')]);
    await execa('chown', ['-R', '1234:5678', join(src, 'sub')]);
    const dst = join(target, 'tree');
    await mkdir(dst);

    const savedBefore = await poolNumber('bclonesaved'); // syncs: the source is on disk, not dirty
    const allocatedBefore = await poolNumber('allocated');
    const result = await cloneTree(src, dst, new AbortController().signal);
    const savedAfter = await poolNumber('bclonesaved');
    const allocatedAfter = await poolNumber('allocated');
    expect(result).toMatchObject({ links: 1, directories: 2 });
    expect(result.files + result.skipped).toBe(56);
    // the big files (whole records) are shared, not written again
    expect(savedAfter - savedBefore).toBeGreaterThanOrEqual(bytes);
    expect(allocatedAfter - allocatedBefore).toBeLessThan(bytes / 10);

    const r = await execa('rsync', ['-aHAX', '--numeric-ids', '--itemize-changes', '--', `${src}/`, `${dst}/`]);
    const sent = r.stdout.split('\n').filter((l) => l.startsWith('>f'));
    expect(sent.length).toBe(result.skipped);
    expect((await verifyTree(src, dst, { content: true })).differences).toEqual([]);
    expect(await describeTree(dst, { mtimes: true })).toEqual(await describeTree(src, { mtimes: true }));
    const [a, b] = await Promise.all([lstat(join(dst, 'big0')), lstat(join(dst, 'sub', 'big0 again'))]);
    expect(a.ino).toBe(b.ino);
    expect((await execa('getfattr', ['--only-values', '-n', 'user.origin', join(dst, 'big0')])).stdout).toBe('hiseq');
    expect((await execa('getfacl', ['-c', join(dst, 'sub', 'big1')])).stdout).toContain('user:4242:r--');
    // and still shared once rsync is done with it
    expect((await poolNumber('bclonesaved')) - savedBefore).toBeGreaterThanOrEqual(bytes);
  });
});
