/**
 * Throwaway pools on a file, for the tests and the benchmarks: `/var/tmp/<name>.img`, mounted at
 * `/mnt/<name>`, names starting with "zdc" (scripts/zfs-fuse.sh clean knows them by that).
 *
 * zfs-fuse is only a stand-in for kernel OpenZFS, with defects of its own that the tool must not
 * be blamed for, and must not hide either:
 * - It answers "pool is busy" to `zpool destroy -f` for a while after the last file was closed
 *   (up to many seconds under load). A pool is destroyed with patience, and its image is removed
 *   only once the pool is gone: removing it under a live pool leaves a FAULTED pool that zfs-fuse
 *   re-imports at every start.
 * - It can stop answering file requests altogether (seen in CI: every process touching a mount
 *   waited until killed), when two filesystems were mounted at once: the tool takes turns for
 *   that on zfs-fuse (plugins/zfs/zfs.ts), and so must a test that makes datasets of its own
 *   (one at a time). A new pool's mount is checked with a deadline; if it does not
 *   answer, what zfs-fuse is doing is printed, zfs-fuse is restarted (scripts/zfs-fuse.sh), and
 *   the pool is made once more. The test that was running when it stopped still fails.
 */
import { mkdir, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { scaled } from './time.js';

// test/helpers, or dist/test/helpers when a benchmark runs compiled
const PROJECT = resolve(import.meta.dirname, '..', '..', ...(/[/\\]dist[/\\]test[/\\]helpers$/.test(import.meta.dirname) ? ['..'] : []));
const script = (): string => join(PROJECT, 'scripts', 'zfs-fuse.sh');

/**
 * Where a run records the pools it makes (set by test/global-setup.ts), so that its teardown can
 * destroy what a test left, and only that: another run's pools on the same machine are not its.
 */
export const REGISTRY_ENV = 'ZDC_POOL_REGISTRY';

export interface PoolFiles {
  readonly pool: string;
  readonly image: string;
  readonly mount: string;
}

export function poolFiles(pool: string): PoolFiles {
  if (!/^zdc[a-z0-9]+$/.test(pool)) throw new Error(`a throwaway pool's name starts with zdc and has only a-z and 0-9: ${pool}`);
  return { pool, image: `/var/tmp/${pool}.img`, mount: `/mnt/${pool}` };
}

/** Whether zfs-fuse is the ZFS here (no kernel module). */
function zfsFuse(): Promise<boolean> {
  return execa('pgrep', ['-x', 'zfs-fuse'], { reject: false }).then((r) => r.exitCode === 0);
}

/**
 * Whether zfs-fuse answers for the mount. A directory listing, not a stat: a stat can be answered
 * from the kernel's cache (zfs-fuse asks it to keep attributes for an hour) while zfs-fuse answers
 * nothing, as when its request listener is wedged (scripts/zfs-fuse.sh diagnose).
 */
async function answers(mount: string): Promise<boolean> {
  const r = await execa('ls', ['-a', '--', mount], { reject: false, timeout: scaled(30_000) });
  return r.exitCode === 0 && !r.timedOut;
}

/** What zfs-fuse is doing (scripts/zfs-fuse.sh diagnose), for a test's failure message; empty without zfs-fuse. */
export async function zfsFuseDiagnosis(): Promise<string> {
  if (!(await zfsFuse())) return '';
  const d = await execa('bash', [script(), 'diagnose'], { reject: false, all: true, timeout: 60_000 });
  return d.all;
}

/** Makes the pool (and its image). */
export async function createThrowawayPool(files: PoolFiles, sizeMb: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await execa('truncate', ['-s', `${sizeMb}M`, files.image]);
    const r = await execa('zpool', ['create', '-f', '-m', files.mount, files.pool, files.image], {
      reject: false,
      timeout: scaled(120_000),
    });
    if (r.exitCode === 0) await register(files.pool);
    if (r.exitCode === 0 && (await answers(files.mount))) return;
    const why = r.timedOut
      ? 'zpool create did not return'
      : r.exitCode !== 0
        ? `zpool create: ${r.stderr.trim()}`
        : `its mount ${files.mount} does not answer`;
    if (attempt > 0 || !(await zfsFuse()) || (r.exitCode !== 0 && !r.timedOut)) {
      if (r.exitCode === 0) await destroyThrowawayPool(files);
      throw new Error(`throwaway pool ${files.pool}: ${why}`);
    }
    console.warn(`throwaway pool ${files.pool}: ${why}: zfs-fuse stopped answering (a zfs-fuse defect); what it was doing:`);
    console.warn(await zfsFuseDiagnosis());
    const s = await execa('bash', [script(), 'restart'], { reject: false, all: true, timeout: 120_000 });
    console.warn(s.all);
    if (s.exitCode !== 0) throw new Error(`throwaway pool ${files.pool}: ${why}, and zfs-fuse did not restart`);
    // The first try may have made it before zfs-fuse stopped.
    await destroyThrowawayPool(files, 30_000);
  }
}

/** Processes with their working directory or an open file under `mount` (for the message). */
async function holders(mount: string): Promise<string> {
  const found: string[] = [];
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const links = ['cwd', ...(await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])).map((fd) => join('fd', fd))];
    for (const l of links) {
      const target = await readlink(`/proc/${pid}/${l}`).catch(() => '');
      if (target === mount || target.startsWith(`${mount}/`)) {
        const cmd = await execa('ps', ['-o', 'args=', '-p', pid], { reject: false });
        found.push(`${pid} (${cmd.stdout.trim().slice(0, 80)}) ${l} ${target}`);
        break;
      }
    }
  }
  return found.length > 0 ? found.join('; ') : 'no process';
}

/**
 * Destroys the pool, retrying "busy" with growing pauses (zfs-fuse's busy lasts), and removes its
 * image and mountpoint once it is gone. Returns false, after a warning naming what holds it, when
 * it is still there after the deadline; its image then stays (scripts/zfs-fuse.sh clean and the
 * run's teardown try again).
 */
export async function destroyThrowawayPool(files: PoolFiles, deadlineMs = scaled(90_000)): Promise<boolean> {
  const deadline = Date.now() + deadlineMs;
  let last = '';
  for (let i = 0; ; i++) {
    const r = await execa('zpool', ['destroy', '-f', files.pool], { reject: false, timeout: scaled(120_000) });
    if (r.exitCode === 0 || /no such pool/.test(r.stderr)) {
      await rm(files.image, { force: true });
      await rm(files.mount, { recursive: true, force: true }).catch(() => undefined);
      return true;
    }
    last = r.timedOut ? 'zpool destroy did not return' : r.stderr.trim();
    if (Date.now() > deadline) break;
    await sleep(Math.min(250 * 2 ** i, 4000));
  }
  console.warn(
    `throwaway pool ${files.pool}: not destroyed after ${Math.round(deadlineMs / 1000)} s (${last}); held by ${await holders(files.mount)}`,
  );
  return false;
}

async function register(pool: string): Promise<void> {
  const dir = process.env[REGISTRY_ENV];
  if (!dir) return;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, pool), '');
}

/** The pools a run recorded in `dir` that are still there. */
export async function registeredPools(dir: string): Promise<PoolFiles[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^zdc[a-z0-9]+$/.test(n));
  if (names.length === 0) return [];
  const r = await execa('zpool', ['list', '-H', '-o', 'name'], { reject: false, timeout: 30_000 });
  const live = new Set(r.stdout.split('\n'));
  return names.filter((n) => live.has(n)).map(poolFiles);
}
