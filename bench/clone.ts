/**
 * Block cloning against rsync, through the tool itself, on kernel OpenZFS (run it in the guest,
 * with room on /var/tmp):
 *
 *   npm run build
 *   scripts/openzfs-vm.sh -d 12 -t 3600 -- node dist/bench/clone.js
 *   scripts/openzfs-vm.sh -d 12 -t 3600 -e BENCH_TREES=many -- node dist/bench/clone.js   # one tree only
 *
 * (Measured 2026-11-27 with a second guest running: 1 GiB tree ~13 min, 20,000-file tree over
 * 35 min, most of it making and checksumming the trees.)
 *
 * Two trees: 1 GiB in 16 files of 64 MiB, and 20,000 small files in 200 directories. Each is
 * converted by the CLI (`handle`, no quiet or grace period) twice, from identical fresh trees:
 * once with the rsync plugin's `blockCloning: off` (rsync -aHAX does the copy) and once with
 * `blockCloning: auto` (probe, clone by descriptor, then rsync -aHAX for the rest). The pool is
 * exported and imported before each conversion so that every run starts with a cold cache.
 * Reported: the whole conversion's wall time, the copy step's (from its log lines), and the
 * pool's bclonesaved and allocated growth when the copy is sealed (before the original is
 * removed), recorded by a small plugin. Prints a Markdown table.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { probeBlockCloning } from '../plugins/rsync/clone.js';
import { describeTree } from '../test/helpers/tree.js';

const POOL = 'zdcbench';
const IMAGE_DIR = process.env.BENCH_IMAGE_DIR ?? '/var/tmp';
const IMAGE = join(IMAGE_DIR, `${POOL}.img`);
const MOUNT = `/mnt/${POOL}`;
const CLI = resolve(import.meta.dirname, '..', 'src', 'cli.js');
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
  readonly files: number;
  readonly bytes: number;
  make(dir: string): Promise<void>;
}

const bigTree: Tree = {
  label: '1 GiB, 16 files of 64 MiB',
  files: 16,
  bytes: 16 * (64 << 20),
  async make(dir) {
    await mkdir(dir, { recursive: true });
    const block = randomBytes(64 << 20);
    for (let i = 0; i < 16; i++) {
      // a different first word in every 128 KiB record: no two files alike
      for (let off = 0; off < block.length; off += 131_072) block.writeUInt32LE(i, off);
      await writeFile(join(dir, `run${String(i).padStart(2, '0')}.bam`), block);
    }
  },
};

function manySize(d: number, f: number): number {
  return 512 + (((d * 100 + f) * 7919) % 16_384);
}

const manyTree: Tree = {
  label: '20,000 files of 0.5-16 KiB in 200 directories',
  files: 20_000,
  bytes: Array.from({ length: 20_000 }, (_, i) => manySize(Math.floor(i / 100), i % 100)).reduce((a, b) => a + b, 0),
  async make(dir) {
    const pool = randomBytes(1 << 20);
    for (let d = 0; d < 200; d++) {
      const sub = join(dir, `lane${String(d).padStart(3, '0')}`);
      await mkdir(sub, { recursive: true });
      for (let f = 0; f < 100; f++) {
        const size = manySize(d, f);
        const start = ((d * 100 + f) * 37) % (pool.length - size);
        await writeFile(join(sub, `tile${String(f).padStart(3, '0')}.cbcl`), pool.subarray(start, start + size));
      }
    }
  },
};

/** Records the pool's bclonesaved and allocated when the copy is sealed. */
const SEAL_REPORT = `import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const get = (pool, prop) => Number(execFileSync('zpool', ['get', '-Hp', '-o', 'value', prop, pool], { encoding: 'utf8' }).trim());
export default {
  name: 'bench-seal-report',
  options: { parse: (x) => x },
  apply(hooks, { options: o }) {
    hooks.step.tapPromise('bench-seal-report', async (job, step, when) => {
      if (step !== 'migrate/seal' || when !== 'before') return;
      execFileSync('zpool', ['sync', o.pool]);
      writeFileSync(o.report, JSON.stringify({ bclonesaved: get(o.pool, 'bclonesaved'), allocated: get(o.pool, 'allocated') }));
    });
  },
};
`;

interface Run {
  /** The whole conversion (handle), seconds. */
  seconds: number;
  /** The copy step alone (from its log line to the next step's), seconds. */
  copySeconds: number;
  /** Growth of the pool's bclonesaved and allocated when the copy was sealed, bytes. */
  saved: number;
  allocated: number;
  /** The copy step's "copy: ..." log line. */
  path: string;
}

const stamp = (line: string): number => Date.parse(line.slice(0, 29));

async function convert(work: string, tree: Tree, mode: 'off' | 'auto'): Promise<Run> {
  const name = `${tree.files === 16 ? 'big' : 'many'}-${mode}`;
  const dir = join(MOUNT, name);
  log(`  making ${name}...`);
  await tree.make(dir);
  const before = await describeTree(dir, { mtimes: true });
  await coldCache();
  const saved0 = await poolNumber('bclonesaved');
  const alloc0 = await poolNumber('allocated');
  const report = join(work, `${name}.json`);
  const plugin = join(work, 'seal-report.mjs');
  await writeFile(plugin, SEAL_REPORT, { mode: 0o644 });
  const config = join(work, `${name}.config.json`);
  const plugins = [
    'name-filter',
    ['quiet-wait', { quietSeconds: 0 }],
    'zfs',
    ['rsync', { graceSeconds: 0, blockCloning: mode }],
    [plugin, { pool: POOL, report }],
  ];
  await writeFile(config, JSON.stringify({ stateDir: join(work, 'state'), roots: [{ rootfs: POOL, rootdir: MOUNT, plugins }] }));
  const start = process.hrtime.bigint();
  const r = await execa(process.execPath, [CLI, '--config', config, ...(process.env.BENCH_LOG_DIR ? ['-v'] : []), 'handle', dir], {
    reject: false,
    stdin: 'ignore',
    cwd: '/',
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  // BENCH_LOG_DIR=<dir> keeps each conversion's log (with -w <dir> in the guest), to see where the time goes
  if (process.env.BENCH_LOG_DIR) await writeFile(join(process.env.BENCH_LOG_DIR, `${name}.log`), String(r.stderr));
  const lines = String(r.stderr).split('\n');
  if (r.exitCode !== 0 || !lines.some((l) => l.includes('converted into')))
    throw new Error(`${name}: the conversion failed:\n${String(r.stderr)}`);
  const copyStart = lines.find((l) => /INFO: \[rsync\] \[[^\]]+\] copy "/.test(l));
  const sealStart = lines.find((l) => /INFO: \[rsync\] \[[^\]]+\] check the copy against the original/.test(l));
  const path = lines.find((l) => /copy: (rsync|block cloning)/.test(l)) ?? '(no copy line)';
  const seal = JSON.parse(await readFile(report, 'utf8')) as { bclonesaved: number; allocated: number };
  const after = await describeTree(dir, { mtimes: true });
  if (JSON.stringify([...after]) !== JSON.stringify([...before]))
    throw new Error(`${name}: the dataset does not hold what the directory held`);
  await zfs('destroy', `${POOL}/${name}`);
  return {
    seconds,
    copySeconds: copyStart && sealStart ? (stamp(sealStart) - stamp(copyStart)) / 1000 : Number.NaN,
    saved: seal.bclonesaved - saved0,
    allocated: seal.allocated - alloc0,
    path: path.replace(/^.*copy: /, 'copy: '),
  };
}

const mib = (n: number): string => `${(n / 1048576).toFixed(0)} MiB`;

async function main(): Promise<number> {
  await rm(IMAGE, { force: true });
  await execa('truncate', ['-s', process.env.BENCH_POOL_SIZE ?? '6G', IMAGE]);
  await zpool('create', '-f', '-O', 'compression=off', '-O', 'atime=off', '-m', MOUNT, POOL, IMAGE);
  const work = await mkdtemp(join(tmpdir(), 'zdc-bench-clone-'));
  try {
    log(
      `${(await zfs('version')).split('\n').join(', ')}; feature@block_cloning ${(await zpool('get', '-H', '-o', 'value', 'feature@block_cloning', POOL)).trim()}`,
    );
    await zfs('create', `${POOL}/probe`);
    const probe = await probeBlockCloning({ pool: POOL, sourceDir: MOUNT, targetDir: join(MOUNT, 'probe') });
    log(`probe: ${probe.clones ? 'clones' : 'does not clone'}: ${probe.reason}`);
    await zfs('destroy', `${POOL}/probe`);
    const rows: string[] = [];
    // BENCH_TREES=big or =many runs one of the two (default: both)
    const wanted = (process.env.BENCH_TREES ?? 'big,many').split(',');
    for (const tree of [bigTree, manyTree].filter((t) => wanted.includes(t.files === 16 ? 'big' : 'many'))) {
      log(`${tree.label}: ${mib(tree.bytes)}`);
      const a = await convert(work, tree, 'off');
      log(
        `  blockCloning off: ${a.seconds.toFixed(1)} s (copy step ${a.copySeconds.toFixed(1)} s), bclonesaved +${mib(a.saved)}, allocated +${mib(a.allocated)} at the seal; ${a.path}`,
      );
      const b = await convert(work, tree, 'auto');
      log(
        `  blockCloning auto: ${b.seconds.toFixed(1)} s (copy step ${b.copySeconds.toFixed(1)} s), bclonesaved +${mib(b.saved)}, allocated +${mib(b.allocated)} at the seal; ${b.path}`,
      );
      rows.push(
        `| ${tree.label} (${mib(tree.bytes)}) | ${a.seconds.toFixed(1)} s (copy ${a.copySeconds.toFixed(1)} s), +${mib(a.allocated)} allocated | ${b.seconds.toFixed(1)} s (copy ${b.copySeconds.toFixed(1)} s), +${mib(b.allocated)} allocated | ${(a.seconds / b.seconds).toFixed(1)}x (copy ${(a.copySeconds / b.copySeconds).toFixed(1)}x) | +${mib(b.saved)} |`,
      );
    }
    process.stdout.write(
      [
        '| tree | conversion, rsync (`blockCloning: off`) | conversion, block cloning (`auto`) | speed-up | bclonesaved at the seal |',
        '|---|---|---|---|---|',
        ...rows,
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    await zpool('destroy', '-f', POOL).catch(() => undefined);
    await rm(IMAGE, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`bench/clone: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
