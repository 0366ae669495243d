/**
 * Block cloning on kernel OpenZFS (the OpenZFS lane): the probe says yes between two datasets of
 * a pool, cloneTree shares the blocks (bclonesaved grows by the data, the pool's allocation
 * does not), and rsync -aHAX afterwards sends no file data but fixes every piece of metadata.
 * A conversion through the CLI (blockCloning: auto, the default) copies by cloning: the pool's
 * bclonesaved has grown by the data when the copy is sealed, and the dataset holds exactly
 * what the directory held, xattrs and ACLs included.
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cloneTree, probeBlockCloning } from '../../plugins/rsync/clone.js';
import { verifyTree } from '../helpers/verify.js';
import { cli, createPool, datasets, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { leftovers } from '../helpers/state.js';
import { scaled } from '../helpers/time.js';
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

  it('a conversion through the CLI copies by block cloning: bclonesaved grows by the data, and the dataset holds exactly the directory, xattrs and ACLs included', async () => {
    const name = 'run 42';
    const dir = join(p.mount, name);
    await mkdir(join(dir, 'sub', 'deeper'), { recursive: true });
    let bytes = 0;
    for (let i = 0; i < 6; i++) {
      const data = randomBytes((4 << 20) + i * 131_072);
      bytes += data.length;
      await writeFile(join(dir, i % 2 ? 'sub' : '.', `big${i}`), data);
    }
    for (let i = 0; i < 50; i++) await writeFile(join(dir, 'sub', 'deeper', `small${i}`), randomBytes(100 + i * 37));
    await link(join(dir, 'big0'), join(dir, 'sub', 'big0 again'));
    await symlink('big0', join(dir, 'link'));
    await execa('mkfifo', [join(dir, 'fifo')]);
    await execa('setfattr', ['-n', 'user.origin', '-v', 'hiseq', join(dir, 'big0')]);
    await execa('setfacl', ['-m', 'u:4242:r', join(dir, 'sub', 'big1')]);
    await execa('setfacl', ['-d', '-m', 'u:4242:rwx', join(dir, 'sub', 'deeper')]);
    await execa('chown', ['-R', '1234:5678', join(dir, 'sub')]);
    const before = await describeTree(dir, { mtimes: true });
    // A test plugin records the pool's bclonesaved when the copy is sealed (before the original
    // is removed, which frees its side of the shared blocks).
    const report = join(p.work, 'seal.json');
    const plugin = join(p.work, 'bclone-at-seal.mjs');
    await writeFile(
      plugin,
      `import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const get = (pool, prop) => Number(execFileSync('zpool', ['get', '-Hp', '-o', 'value', prop, pool], { encoding: 'utf8' }).trim());
export default {
  name: 'bclone-at-seal',
  options: { parse: (x) => x },
  apply(hooks, { options: o }) {
    hooks.step.tapPromise('bclone-at-seal', async (job, step, when) => {
      if (step !== 'migrate/seal' || when !== 'before') return;
      execFileSync('zpool', ['sync', o.pool]);
      writeFileSync(o.report, JSON.stringify({ bclonesaved: get(o.pool, 'bclonesaved') }));
    });
  },
};
`,
      { mode: 0o644 },
    );
    const savedBefore = await poolNumber('bclonesaved');
    const config = await writeConfig(
      p,
      fastPlugins({ quiet: { quietSeconds: 0 }, more: [[plugin, { pool: p.pool, report }]] }),
      {},
      'clone-cli.json',
    );
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir, timeoutMs: scaled(120_000) });
    expect({ exitCode: r.exitCode, log: r.stderr }).toMatchObject({ exitCode: 0, log: expect.stringContaining('converted into') });
    const copy = r.stderr.split('\n').filter((l) => /copy: (rsync|parallel copy)/.test(l));
    expect(copy).toEqual([
      expect.stringMatching(
        /INFO: .*copy: parallel copy, \d+ files at once, block cloning: \d+ files cloned, [\d.]+ MiB shared(; \d+ entr(y|ies) left to rsync)?; then rsync for the rest$/,
      ),
    ]);
    const files = Number(/block cloning: (\d+) files cloned/.exec(copy[0]!)![1]);
    // 56 regular files (big0's second name is a hard link); one may be left to rsync for its time
    expect(files).toBeGreaterThanOrEqual(55);
    const atSeal = JSON.parse(await readFile(report, 'utf8')) as { bclonesaved: number };
    console.log(
      `conversion by cloning: ${files} files cloned, bclonesaved +${atSeal.bclonesaved - savedBefore} bytes at the seal for ${bytes} bytes of big files`,
    );
    expect(atSeal.bclonesaved - savedBefore).toBeGreaterThanOrEqual(bytes);

    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    const [a, b] = await Promise.all([lstat(join(dir, 'big0')), lstat(join(dir, 'sub', 'big0 again'))]);
    expect(a.ino).toBe(b.ino);
    expect((await lstat(join(dir, 'fifo'))).isFIFO()).toBe(true);
    expect((await execa('getfattr', ['--only-values', '-n', 'user.origin', join(dir, 'big0')])).stdout).toBe('hiseq');
    expect((await execa('getfacl', ['-c', join(dir, 'sub', 'big1')])).stdout).toContain('user:4242:r--');
    expect((await execa('getfacl', ['-c', join(dir, 'sub', 'deeper')])).stdout).toContain('default:user:4242:rwx');
    expect(await leftovers(p, { testDatasets: (d) => d === `${p.pool}/target` })).toEqual([]);
  });
});
