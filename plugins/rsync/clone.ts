/**
 * Copy by block cloning: on a pool where OpenZFS block cloning is active, a regular file copied
 * with copy_file_range (what Node's fs.copyFile uses) shares its blocks with the original
 * instead of writing them again, across datasets of the same pool. FICLONE (`cp
 * --reflink=always`) does not work across datasets on Linux 6.1, copy_file_range does; rsync
 * uses neither.
 *
 * `cloneTree` clones the regular files of a tree (making the directories they need, and hard
 * links as hard links) and stamps each clone with the modification time the original had
 * *before* its data was read (to the microsecond: all that utimes() in Node can set). The caller then runs rsync -aHAX as usual: it finds every cloned
 * file with the same size and modification time and sends no data for it, and it does what it
 * always did for directories, owners, modes, xattrs, ACLs, symlinks and special files; every
 * verification stays as it was. A file that changed after it was cloned has a newer time, so
 * rsync copies it again.
 *
 * `probeBlockCloning` says once per root whether cloning really happens there: zfs-fuse and
 * OpenZFS before 2.2 do not know the feature, it may be disabled (feature or module
 * parameter), and even where it is enabled only a real clone proves that blocks are shared.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, rm, writeFile, type FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { CommandError, HELPER_PREFIX, isErrno, run } from '../../src/index.js';

export interface BlockCloningProbe {
  /** Whether a copy between the two directories shares blocks. */
  readonly clones: boolean;
  /** Why (one line, for the log). */
  readonly reason: string;
  /** `feature@block_cloning` of the pool, when zpool knows it. */
  readonly feature?: string;
  /** The pool's bclonesaved before and after the probe clone, in bytes. */
  readonly savedBefore?: number;
  readonly savedAfter?: number;
}

export interface ProbeOptions {
  /** The pool both directories are on. */
  readonly pool: string;
  /** A directory on one dataset (the root's directory). */
  readonly sourceDir: string;
  /** A directory on another dataset of the same pool (the staging dataset's mountpoint). */
  readonly targetDir: string;
  /** The zpool command. */
  readonly zpool?: string;
  /** Bytes in the probe file (default 1 MiB: eight 128 KiB records). */
  readonly probeBytes?: number;
  readonly signal?: AbortSignal;
}

const PARAMETER = '/sys/module/zfs/parameters/zfs_bclone_enabled';

async function poolProperties(zpool: string, pool: string, properties: readonly string[], signal?: AbortSignal): Promise<Map<string, string>> {
  const { stdout } = await run(zpool, ['get', '-Hp', '-o', 'property,value', properties.join(','), pool], signal ? { signal } : {});
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [property, value] = line.split('\t');
    if (property && value !== undefined) values.set(property, value);
  }
  return values;
}

async function bclonesaved(zpool: string, pool: string, signal?: AbortSignal): Promise<number> {
  await run(zpool, ['sync', pool], signal ? { signal } : {});
  const value = (await poolProperties(zpool, pool, ['bclonesaved'], signal)).get('bclonesaved');
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n)) throw new Error(`zpool get bclonesaved ${pool}: unexpected value ${JSON.stringify(value)}`);
  return n;
}

/**
 * Whether copies from `sourceDir` to `targetDir` (two datasets of `pool`) share blocks: the pool
 * must know and enable `feature@block_cloning`, the module must not disable it, and a probe clone
 * of a fresh file must make the pool's `bclonesaved` grow by the file's size. The probe files are
 * hidden helper files (`.zfs-dynamic-creator-probe-*`) and are removed again.
 */
export async function probeBlockCloning(options: ProbeOptions): Promise<BlockCloningProbe> {
  const zpool = options.zpool ?? 'zpool';
  const size = options.probeBytes ?? 1 << 20;
  let props: Map<string, string>;
  try {
    props = await poolProperties(zpool, options.pool, ['feature@block_cloning', 'bcloneused', 'bclonesaved'], options.signal);
  } catch (error) {
    if (error instanceof CommandError && /bad property|invalid property|unknown property/i.test(`${error.stderr}${error.stdout}`)) {
      return { clones: false, reason: 'this ZFS does not know block cloning (zfs-fuse, or OpenZFS before 2.2)' };
    }
    throw error;
  }
  const feature = props.get('feature@block_cloning');
  if (feature === undefined || !props.has('bclonesaved')) {
    return { clones: false, reason: 'this ZFS does not know block cloning (zfs-fuse, or OpenZFS before 2.2)' };
  }
  if (feature !== 'enabled' && feature !== 'active') {
    return { clones: false, reason: `feature@block_cloning is ${feature} on pool ${options.pool}`, feature };
  }
  const parameter = await open(PARAMETER, 'r')
    .then(async (fh) => {
      try {
        return (await fh.readFile('utf8')).trim();
      } finally {
        await fh.close();
      }
    })
    .catch(() => undefined);
  if (parameter === '0') return { clones: false, reason: `block cloning is disabled in the kernel module (${PARAMETER} is 0)`, feature };

  const tag = `${HELPER_PREFIX}probe-${randomBytes(6).toString('hex')}`;
  const source = `${options.sourceDir}/${tag}`;
  const target = `${options.targetDir}/${tag}`;
  try {
    await writeFile(source, randomBytes(size), { flag: 'wx', mode: 0o600 });
    // Blocks still dirty in the open transaction group are copied, not cloned: sync first.
    const savedBefore = await bclonesaved(zpool, options.pool, options.signal);
    await copyFile(source, target, constants.COPYFILE_EXCL);
    const savedAfter = await bclonesaved(zpool, options.pool, options.signal);
    const clones = savedAfter - savedBefore >= size;
    return {
      clones,
      reason: clones
        ? `a probe copy of ${size} bytes shared its blocks (bclonesaved ${savedBefore} -> ${savedAfter})`
        : `a probe copy of ${size} bytes did not share its blocks (bclonesaved ${savedBefore} -> ${savedAfter})`,
      feature,
      savedBefore,
      savedAfter,
    };
  } finally {
    await Promise.all([rm(source, { force: true }), rm(target, { force: true })]);
  }
}

export interface CloneResult {
  /** Regular files cloned (one per hard-link group). */
  readonly files: number;
  readonly bytes: number;
  /** Further names of hard-link groups, made as hard links. */
  readonly links: number;
  readonly directories: number;
  /** Entries left to rsync: already in the target, or changed under us. */
  readonly skipped: number;
}

const SEP = Buffer.from('/');
const join = (dir: Buffer, name: Buffer): Buffer => Buffer.concat([dir, SEP, name]);

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('clone stopped');
}

/**
 * The time a clone can be given through utimes(): libuv turns the double into a timespec and
 * keeps microseconds only, so a clone's time is the original's truncated to the microsecond.
 * `seconds` is chosen 0.5 µs into that microsecond, which a double near 1.7e9 s (exact to about
 * 240 ns) cannot push out of it.
 */
function clonedTime(ns: bigint): { seconds: number; ns: bigint } {
  const sec = ns / 1_000_000_000n;
  const us = (ns % 1_000_000_000n) / 1_000n;
  return { seconds: Number(sec) + (Number(us) * 1000 + 500) / 1e9, ns: sec * 1_000_000_000n + us * 1_000n };
}

/** Node's mtimeMs for a time in ns, as the verification compares it (whole milliseconds). */
function verifiedMs(ns: bigint): number {
  return Math.floor(Number(ns / 1_000_000_000n) * 1e3 + Number(ns % 1_000_000_000n) / 1e6);
}

/**
 * Whether a clone stamped with clonedTime(ns) has, for rsync, the same time (the same second)
 * and, for the verification, the same millisecond as the original. Not so for a time before
 * 1970, or within about 120 ns of a millisecond's end (a double rounds the original's mtimeMs
 * up): such a file, about one in 8,000, is left to rsync to copy.
 */
function timeSurvivesClone(ns: bigint): boolean {
  return ns >= 0n && verifiedMs(clonedTime(ns).ns) === verifiedMs(ns);
}

async function openNoFollow(path: Buffer): Promise<FileHandle | undefined> {
  try {
    return await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    // a symlink now (ELOOP), gone, or a FIFO without writer...: rsync deals with it
    if (isErrno(error, 'ELOOP') || isErrno(error, 'ENOENT') || isErrno(error, 'ENXIO')) return undefined;
    throw error;
  }
}

/**
 * Clones every regular file under `src` to the same relative path under `dst` (copy_file_range
 * through fs.copyFile), creating the directories on the way (mode 0700: rsync sets the real
 * ones), and hard-links further names of a file that has several. Never follows a symlink,
 * never crosses into another filesystem, never overwrites anything already in `dst`. Names are
 * handled as bytes (any name, not only UTF-8). `concurrency` files are copied at once.
 */
export async function cloneTree(src: string, dst: string, signal: AbortSignal, concurrency = 4): Promise<CloneResult> {
  const top = await lstat(src, { bigint: true });
  if (!top.isDirectory()) throw new Error(`${src} is not a directory`);
  let files = 0;
  let bytes = 0;
  let links = 0;
  let directories = 0;
  let skipped = 0;
  // dev:ino of a file with several names -> where its clone is (or will be) in dst
  const groups = new Map<string, Promise<Buffer | undefined>>();

  const cloneFile = async (from: Buffer, to: Buffer, seen: BigIntStats): Promise<Buffer | undefined> => {
    const fh = await openNoFollow(from);
    if (!fh) {
      skipped++;
      return undefined;
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile() || st.ino !== seen.ino || st.dev !== seen.dev || !timeSurvivesClone(st.mtimeNs)) {
        skipped++;
        return undefined;
      }
      try {
        // through /proc/self/fd: exactly the file opened above, whatever its name points to now
        await copyFile(`/proc/self/fd/${fh.fd}`, to, constants.COPYFILE_EXCL);
      } catch (error) {
        if (isErrno(error, 'EEXIST')) {
          skipped++;
          return undefined;
        }
        throw error;
      }
      // the time seen before the data was read: a later change makes the original newer
      const out = await open(to, constants.O_WRONLY | constants.O_NOFOLLOW);
      try {
        await out.utimes(clonedTime(st.atimeNs < 0n ? 0n : st.atimeNs).seconds, clonedTime(st.mtimeNs).seconds);
      } finally {
        await out.close();
      }
      files++;
      bytes += Number(st.size);
      return to;
    } finally {
      await fh.close();
    }
  };

  const linkOrClone = async (from: Buffer, to: Buffer, st: BigIntStats): Promise<void> => {
    if (signal.aborted) throw abortError(signal);
    if (st.nlink <= 1n) {
      await cloneFile(from, to, st);
      return;
    }
    const key = `${st.dev}:${st.ino}`;
    const first = groups.get(key);
    if (first === undefined) {
      const cloning = cloneFile(from, to, st);
      groups.set(key, cloning.catch(() => undefined));
      await cloning;
      return;
    }
    const target = await first;
    if (target === undefined) {
      skipped++;
      return;
    }
    try {
      await link(target, to);
      links++;
    } catch (error) {
      if (!isErrno(error, 'EEXIST') && !isErrno(error, 'ENOENT')) throw error;
      skipped++;
    }
  };

  // At most `concurrency` files in flight; directories are walked depth-first meanwhile.
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const start = (from: Buffer, to: Buffer, st: BigIntStats): void => {
    const task: Promise<void> = linkOrClone(from, to, st)
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => running.delete(task));
    running.add(task);
  };

  const walk = async (from: Buffer, to: Buffer): Promise<void> => {
    let names: Buffer[];
    try {
      names = await readdir(from, { encoding: 'buffer' });
    } catch (error) {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return; // gone meanwhile: rsync sees the same
      throw error;
    }
    for (const name of names) {
      if (failure !== undefined) return;
      if (signal.aborted) throw abortError(signal);
      const a = join(from, name);
      const b = join(to, name);
      let st: BigIntStats;
      try {
        st = await lstat(a, { bigint: true });
      } catch (error) {
        if (isErrno(error, 'ENOENT')) continue;
        throw error;
      }
      if (st.dev !== top.dev) continue; // another filesystem: not ours to copy
      if (st.isDirectory()) {
        try {
          await mkdir(b, { mode: 0o700 });
          directories++;
        } catch (error) {
          if (!isErrno(error, 'EEXIST')) throw error;
          if (!(await lstat(b)).isDirectory()) {
            skipped++;
            continue;
          }
        }
        await walk(a, b);
      } else if (st.isFile()) {
        while (running.size >= Math.max(1, concurrency)) await Promise.race(running);
        start(a, b, st);
      }
    }
  };

  try {
    await walk(Buffer.from(src), Buffer.from(dst));
  } catch (error) {
    failure ??= { error };
  }
  await Promise.all(running);
  if (failure !== undefined) throw failure.error;
  return { files, bytes, links, directories, skipped };
}
