/**
 * Block cloning against rsync, on kernel OpenZFS (run it in the guest, with room on /var/tmp):
 *
 *   npm run build
 *   scripts/openzfs-vm.sh -d 12 -- node dist/bench/clone.js
 *
 * Two trees: 1 GiB in 16 files of 64 MiB, and 20,000 small files in 200 directories. Each is
 * copied from the pool's root dataset into a fresh dataset twice: once with rsync -aHAX (what
 * the rsync plugin does), once with cloneTree followed by the same rsync -aHAX (which then
 * sends no file data). The pool is exported and imported before each copy so that every run
 * starts with a cold cache, and each time includes a `zpool sync`. Prints a Markdown table.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { cloneTree, probeBlockCloning } from '../plugins/rsync/clone.js';
import { verifyTree } from '../test/helpers/verify.js';

const POOL = 'zdcbench';
const IMAGE_DIR = process.env.BENCH_IMAGE_DIR ?? '/var/tmp';
const IMAGE = join(IMAGE_DIR, `${POOL}.img`);
const MOUNT = `/mnt/${POOL}`;
const log = (line: string): void => void process.stderr.write(`${line}\n`);

async function zpool(...args: string[]): Promise<string> {
  return (await execa('zpool', args)).stdout;
}
async function zfs(...args: string[]): Promise<string> {
  return (await execa('zfs', args)).stdout;
}
async function poolNumber(property: string): Promise<number> {
  await zpool('sync', POOL);
  return Number((await zpool('get', '-Hp', '-o', 'value', property, POOL)).trim());
}
async function coldCache(): Promise<void> {
  await zpool('export', POOL);
  await zpool('import', '-d', IMAGE_DIR, POOL);
}

interface Tree {
  readonly label: string;
  readonly dir: string;
  readonly files: number;
  readonly bytes: number;
}

async function bigTree(): Promise<Tree> {
  const dir = join(MOUNT, 'big');
  await mkdir(dir, { recursive: true });
  const block = randomBytes(64 << 20);
  for (let i = 0; i < 16; i++) {
    // a different first word in every 128 KiB record: no two files alike
    for (let off = 0; off < block.length; off += 131_072) block.writeUInt32LE(i, off);
    await writeFile(join(dir, `run${String(i).padStart(2, '0')}.bam`), block);
  }
  return { label: '1 GiB, 16 files of 64 MiB', dir, files: 16, bytes: 16 * block.length };
}

async function manyTree(): Promise<Tree> {
  const dir = join(MOUNT, 'many');
  const pool = randomBytes(1 << 20);
  let bytes = 0;
  for (let d = 0; d < 200; d++) {
    const sub = join(dir, `lane${String(d).padStart(3, '0')}`);
    await mkdir(sub, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const size = 512 + (((d * 100 + f) * 7919) % 16_384);
      const start = (d * 100 + f) * 37 % (pool.length - size);
      await writeFile(join(sub, `tile${String(f).padStart(3, '0')}.cbcl`), pool.subarray(start, start + size));
      bytes += size;
    }
  }
  return { label: '20,000 files of 0.5-16 KiB in 200 directories', dir, files: 20_000, bytes };
}

interface Run {
  seconds: number;
  saved: number;
  allocated: number;
}

async function timed(tree: Tree, name: string, copy: (src: string, dst: string) => Promise<void>): Promise<Run> {
  const fs = `${POOL}/${tree.label.startsWith('1 GiB') ? 'big' : 'many'}-${name}`;
  await zfs('create', fs);
  await coldCache();
  const saved0 = await poolNumber('bclonesaved');
  const alloc0 = await poolNumber('allocated');
  const dst = join(MOUNT, fs.slice(POOL.length + 1));
  const start = process.hrtime.bigint();
  await copy(tree.dir, dst);
  await zpool('sync', POOL);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const saved = (await poolNumber('bclonesaved')) - saved0;
  const allocated = (await poolNumber('allocated')) - alloc0;
  const v = await verifyTree(tree.dir, dst, { content: false });
  if (v.differences.length > 0) throw new Error(`${name}: the copy differs: ${v.differences.slice(0, 3).join('; ')}`);
  await zfs('destroy', fs);
  return { seconds, saved, allocated };
}

const rsync = async (src: string, dst: string): Promise<void> => {
  await execa('rsync', ['-aHAX', '--numeric-ids', '--', `${src}/`, `${dst}/`]);
};
const cloneThenRsync = async (src: string, dst: string): Promise<void> => {
  await cloneTree(src, dst, new AbortController().signal);
  const r = await execa('rsync', ['-aHAX', '--numeric-ids', '--itemize-changes', '--', `${src}/`, `${dst}/`]);
  const sent = r.stdout.split('\n').filter((l) => l.startsWith('>f')).length;
  if (sent > 0) log(`  (rsync after the clone sent ${sent} file(s) again)`);
};

const mib = (n: number): string => `${(n / 1048576).toFixed(0)} MiB`;

async function main(): Promise<number> {
  await rm(IMAGE, { force: true });
  await execa('truncate', ['-s', process.env.BENCH_POOL_SIZE ?? '6G', IMAGE]);
  await zpool('create', '-f', '-O', 'compression=off', '-O', 'atime=off', '-m', MOUNT, POOL, IMAGE);
  try {
    log(`${(await zfs('version')).split('\n').join(', ')}; feature@block_cloning ${(await zpool('get', '-H', '-o', 'value', 'feature@block_cloning', POOL)).trim()}`);
    await zfs('create', `${POOL}/probe`);
    const probe = await probeBlockCloning({ pool: POOL, sourceDir: MOUNT, targetDir: join(MOUNT, 'probe') });
    log(`probe: ${probe.clones ? 'clones' : 'does not clone'}: ${probe.reason}`);
    await zfs('destroy', `${POOL}/probe`);
    const rows: string[] = [];
    for (const make of [bigTree, manyTree]) {
      log('making the tree...');
      const tree = await make();
      log(`${tree.label}: ${mib(tree.bytes)}`);
      const a = await timed(tree, 'rsync', rsync);
      log(`  rsync -aHAX: ${a.seconds.toFixed(1)} s, bclonesaved +${mib(a.saved)}, allocated +${mib(a.allocated)}`);
      const b = await timed(tree, 'clone', cloneThenRsync);
      log(`  cloneTree + rsync -aHAX: ${b.seconds.toFixed(1)} s, bclonesaved +${mib(b.saved)}, allocated +${mib(b.allocated)}`);
      rows.push(
        `| ${tree.label} (${mib(tree.bytes)}) | ${a.seconds.toFixed(1)} s, +${mib(a.allocated)} allocated | ${b.seconds.toFixed(1)} s, +${mib(b.allocated)} allocated | ${(a.seconds / b.seconds).toFixed(1)}x | +${mib(b.saved)} |`,
      );
      await rm(tree.dir, { recursive: true });
    }
    process.stdout.write(
      [
        '| tree | rsync -aHAX | cloneTree, then rsync -aHAX | speed-up | bclonesaved |',
        '|---|---|---|---|---|',
        ...rows,
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    await zpool('destroy', '-f', POOL).catch(() => undefined);
    await rm(IMAGE, { force: true });
  }
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`bench/clone: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
