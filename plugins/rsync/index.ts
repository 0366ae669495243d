/**
 * rsync: the data side of the lifecycle.
 *
 * migrate  copy the original into the staging filesystem with rsync -aHAX, the source pinned by
 *          descriptor (/proc/<pid>/fd/<n>: the identity-checked directory, whatever its path
 *          becomes); then seal the copy: anything in it that the original does not hold (a file
 *          deleted meanwhile, or content read through a symlink swapped in during the copy) is
 *          removed, and what is left is recorded as the baseline manifest
 * swap     (STAGE.catchUp, after the commit) catch up: copy, by descriptor, entries whose original
 *          changed since the baseline while the dataset did not (threeway.ts); conflicts are kept
 * cleanup  (STAGE.retire) wait until the original has stayed unchanged for the grace period with
 *          nobody holding anything in it (by inode or by a mount of it, any mount namespace),
 *          catch up again; a pass
 *          that copies nothing and finds no conflict is the verification; only then remove the
 *          original, by descriptor, never following a symlink nor leaving its filesystem
 *
 * The original is in the root-only holding directory from the swap on: its owner can reach it
 * only through descriptors opened before or mounts of it made before (both count as holders),
 * never by path.
 */
import { basename, dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { open as openFile, unlink } from 'node:fs/promises';
import { constants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as z from 'zod';
import {
  DirectoryWatches,
  MAX_WATCHES,
  CommandError,
  RefusedError,
  STAGE,
  TransientError,
  TreeChangedError,
  UnsupportedEntryError,
  at,
  copyEntry,
  definePlugin,
  describeHolders,
  displayPath,
  ensureDir,
  holdersOf,
  holdingDir,
  isErrno,
  oneLine,
  jobPaths,
  legacyHelperPath,
  mountsBelow,
  openChild,
  openDir,
  quoteName,
  DamagedStateError,
  removeTree,
  retry,
  treeOf,
  run,
  statAt,
  treeDigest,
  walk,
  walkPair,
  type DirRef,
  type EntryInfo,
  type Identity,
  type Job,
  UnverifiedEntriesError,
  VerifiedSet,
} from '../../src/index.js';
import { cloneIntoStaging, describeCopyPath, removeStaleProbes } from './clone.js';
import { Manifest, ManifestWriter, manifestPath, removeManifest, setAsideManifest } from './manifest.js';
import { decide, decideBelowGone, difference, same, type Meta } from './threeway.js';
import { CopyStalledError, watchProgress, type ProgressWatch } from './watchdog.js';
import { checkRsync, type RsyncSafety } from './version.js';
import { rsyncDoctor } from './doctor.js';

const NAME = 'rsync';

/** During the grace period, a quiet tree is walked again at least this often, whatever inotify says. */
const FULL_CHECK_MS = 60_000;

const options = z
  .object({
    command: z.string().min(1).default('rsync'),
    /** rsync flags for the copy: archive, hard links, ACLs, xattrs, numeric owners, holes kept as holes. */
    flags: z.array(z.string().regex(/^-/, 'an rsync option')).default(['-aHAX', '--numeric-ids', '--sparse']),
    /** The original must stay unchanged this long before it is removed. */
    graceSeconds: z.number().min(0).default(30),
    /** Give up (keep the original, report an error) when it keeps changing this long. */
    maxGraceSeconds: z.number().min(0).default(600),
    /** Compare file contents too when verifying (reads everything twice). */
    verifyContent: z.boolean().default(false),
    /** Catch-up passes in the swap before the cleanup takes over. */
    catchUpRounds: z.number().int().min(1).max(50).default(5),
    /** Tries for a copy that fails in a way that may pass (rsync exit 24, vanished files). */
    copyAttempts: z.number().int().min(1).max(20).default(4),
    /**
     * Copy regular files by block cloning (copy_file_range) before the rsync, which then sends no
     * data for them: "auto" where a probe clone into the staging dataset shares blocks (once per
     * root), "off" never; "always" without probing (for tests, or a filesystem whose sharing the
     * probe cannot see; on one that cannot share blocks it is a kernel-side copy).
     */
    blockCloning: z.enum(['auto', 'off', 'always']).default('auto'),
    /**
     * Stop the copy when rsync and its processes neither read, wrote nor ran for this long (a
     * file swapped for a FIFO blocks rsync's open for ever): the job is rolled back and reported.
     */
    stallSeconds: z.number().positive().default(300),
  })
  .strict();

type Options = z.infer<typeof options>;

/** rsync exit codes: 23 partial transfer (an error), 24 vanished source files (a race, retried). */
const VANISHED = 24;

const NO_SPACE = /No space left on device|Disk quota exceeded|quota exceeded/i;

/**
 * rsync's last line only says "some files were not transferred (see previous errors)": the
 * message names the first real error instead, and says plainly when it is a full pool or quota.
 */
export function explainCopyError(error: CommandError): Error {
  const lines = error.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const errors = lines.filter((l) => l.startsWith('rsync: ') || l.startsWith('rsync error: '));
  const telling =
    lines.find((l) => NO_SPACE.test(l)) ?? lines.find((l) => l.startsWith('rsync: ') && !/Broken pipe|connection unexpectedly closed/.test(l));
  if (telling === undefined) return error;
  const cause = NO_SPACE.test(telling) ? (/quota/i.test(telling) ? 'the new filesystem is over its quota: ' : 'no space left: ') : '';
  const more = errors.filter((l) => l.startsWith('rsync: ')).length - 1;
  return new Error(`copy failed: ${cause}${telling}${more > 0 ? ` (and ${more} more error(s))` : ''} (rsync exit ${error.exitCode})`);
}

/**
 * A late change to the original that does not fit the live dataset (its limits are set at the
 * commit) is not caught up: the verification cannot pass, the original is kept, and the message
 * says why and what to do. Any other error is given back as it was.
 */
export function noRoom(job: Job, aside: string, error: unknown): unknown {
  // Node names EDQUOT "Unknown system error -122" (no code): known by its number.
  const errno = (error as NodeJS.ErrnoException | undefined)?.errno;
  if (!isErrno(error, 'EDQUOT') && !isErrno(error, 'ENOSPC') && errno !== -osConstants.errno.EDQUOT && errno !== -osConstants.errno.ENOSPC) return error;
  const fs = job.record.filesystem ?? `${job.root.rootfs}/${job.name}`;
  return new Error(
    `a late change to the original does not fit in ${fs} (${(error as Error).message.split('\n')[0]}): over its quota or refquota (set at the commit), or the pool is full; ` +
      `the original is kept at ${quoteName(aside)}; raise the quota (zfs get quota,refquota ${fs}) or make room, then run 'zfs-dynamic-creator recover'`,
  );
}

/** checkRsync once per command and process (a failed check is made again next time). */
const rsyncChecks = new Map<string, Promise<RsyncSafety>>();
function rsyncChecked(command: string): Promise<RsyncSafety> {
  let known = rsyncChecks.get(command);
  if (known === undefined) {
    rsyncChecks.set(command, (known = checkRsync(command)));
    known.catch(() => rsyncChecks.delete(command));
  }
  return known;
}

/** Regular files of the original that the conversion copied (its baseline), and their apparent size. */
async function copiedOf(manifest: Manifest): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for await (const [, meta] of manifest.entries()) {
    if (meta.type !== 'file') continue;
    files += 1;
    bytes += meta.size;
  }
  return { files, bytes };
}

/**
 * The length of a regular file rsync copied, from a line of `--out-format='%i %l'` (">f+++++++++
 * 1234": sent; "hf…": a hard link to one sent), or undefined for anything else (directories,
 * symlinks, other output).
 */
export function copiedItem(line: string): number | undefined {
  const match = /^[>ch]f\S* (\d+)$/.exec(line);
  return match ? Number(match[1]) : undefined;
}

function metaOf(e: EntryInfo): Meta {
  return { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: e.size, mtimeMs: e.mtimeMs, rdev: e.rdev, ...(e.target !== undefined ? { target: e.target } : {}) };
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function nameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

/** Open directories of one tree by relative path, each opened once, all closed together. */
class Dirs {
  private readonly open = new Map<string, Promise<DirRef>>();
  constructor(
    private readonly root: DirRef,
    private readonly create?: (rel: string) => EntryInfo | undefined,
  ) {}
  get(rel: string): Promise<DirRef> {
    if (rel === '') return Promise.resolve(this.root);
    let ref = this.open.get(rel);
    if (!ref) {
      ref = ensureDir(this.root, rel, this.create);
      this.open.set(rel, ref);
      ref.catch(() => this.open.delete(rel));
    }
    return ref;
  }
  async close(): Promise<void> {
    for (const ref of this.open.values()) await (await ref.catch(() => undefined))?.close();
    this.open.clear();
  }
}

interface PassResult {
  /** Entries copied from the original. */
  copied: number;
  bytes: number;
  /** Entries both sides changed differently (or unsupported late changes): the original must be kept. */
  conflicts: string[];
  /** The original changed while the pass ran: not a verification. */
  changing: boolean;
  entries: number;
}

/** An entry a pass decided to copy: the original's version, and the dataset's as judged. */
interface Copy {
  rel: string;
  o: EntryInfo;
  d: EntryInfo | undefined;
}

/** What applying a pass's copies did: the baseline's new entries, and whether anything changed meanwhile. */
interface Applied {
  copied: number;
  bytes: number;
  changes: [string, Meta][];
  changing: boolean;
}

/**
 * A directory a removal locked (root's, 0700: see removeTree) before a crash, taken for its
 * baseline's owner and mode: only the removal makes a user's directory so. Half locked counts
 * (a crash between the chown and the chmod), and the removal is told the owner and mode to give
 * back should the directory stay.
 */
function unlocked(o: EntryInfo, b: Meta, verified: VerifiedSet | undefined): EntryInfo {
  const root = o.uid === (process.geteuid?.() ?? 0) && o.gid === (process.getegid?.() ?? 0);
  const locked = o.type === 'dir' && b.type === 'dir' && (root || o.mode === 0o700);
  if (!locked) return o;
  verified?.lockedBefore(o.ino, { uid: b.uid, gid: b.gid, mode: b.mode & 0o7777 });
  return { ...o, uid: b.uid, gid: b.gid, mode: b.mode };
}

/** Whether a removal of the original began in an earlier run (it may have locked directories). */
function removalBegan(job: Job): boolean {
  return job.record.steps.some((s) => s.phase === 'cleanup' && s.step === 'remove-original');
}

/** What job.step gives for a pass in a dry run (never reached: the dry run returns before any pass). */
const NO_PASS: PassResult = { copied: 0, bytes: 0, conflicts: [], changing: false, entries: 0 };

async function sha256Of(dir: DirRef, name: string): Promise<string> {
  const handle = await openFile(at(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  const hash = createHash('sha256');
  try {
    // Never read anything but a regular file (a FIFO swapped in would give nothing, or block a read).
    if (!(await handle.stat()).isFile()) throw new TreeChangedError(name, `${displayPath(name)} is no longer a regular file`);
    for await (const chunk of handle.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

export default definePlugin<Options>({
  name: NAME,
  description: 'copies the data in, catches up only the original\'s own changes, verifies, and removes the original only once verified',
  options,
  apply(hooks, { options: opts, stateDir }) {
    hooks.doctor.tapPromise(NAME, (checks, doctor) => rsyncDoctor(checks, doctor, opts));
    const manifestOf = (job: Job): string => manifestPath(stateDir, job.id);
    /**
     * The baseline after the commit. A torn last line (a crash) is dropped; a damaged manifest is
     * set aside and the job stops once, saying so: the next run verifies without it (safely:
     * every difference is then a conflict), so damage never wedges the job.
     */
    const openBaseline = async (job: Job, aside: string): Promise<Manifest | undefined> => {
      const onDamage = async (e: DamagedStateError): Promise<Error> => {
        const what = `the job's copy manifest ${quoteName(e.file)} is damaged (${e.detail})`;
        const moved = await setAsideManifest(e.file).catch((m: unknown) => new Error(oneLine(m)));
        const without = 'verifies without it and keeps, as conflicts to settle, the entries the original and the dataset disagree on';
        const kept = `the original is kept at ${quoteName(aside)}`;
        return new DamagedStateError(
          e.file,
          e.detail,
          typeof moved === 'string'
            ? `${what}: moved to ${quoteName(moved)}; ${kept}; the next 'zfs-dynamic-creator recover' ${without}`
            : `${what} and could not be moved aside (${moved.message}); ${kept}; move the file away, then run 'zfs-dynamic-creator recover', which ${without}`,
        );
      };
      const manifest = await Manifest.open(manifestOf(job), { onDamage });
      if (manifest?.torn) job.log.info(`the last line of ${quoteName(manifest.path)} was cut short (a crash or a full disk); it is dropped and cut off before the next record`);
      return manifest;
    };

    /** The moved-aside original, if it is still there: new layout, or that of older versions. */
    const asidePaths = (job: Job): string[] => {
      const legacy = legacyHelperPath(job.root.rootdir, job.name, 'orig');
      // The root-level name of older versions only for a job whose record says it used it.
      return [jobPaths(job.root.rootdir, job.name).aside, ...(job.record.aside === legacy ? [legacy] : [])];
    };
    const openAside = async (job: Job): Promise<{ ref: DirRef; path: string } | undefined> => {
      for (const path of asidePaths(job)) {
        try {
          return { ref: await openDir(path, job.record.identity), path };
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw error;
        }
      }
      return undefined;
    };
    /** The live dataset at the original path: a mount, never a symlink. */
    const openLive = async (job: Job): Promise<DirRef> => {
      const [live, root] = await Promise.all([openDir(job.path), openDir(job.root.rootdir)]);
      await root.close();
      if (live.dev === root.dev) {
        await live.close();
        throw new Error(`${quoteName(job.path)} is not a mounted filesystem; not copying into it`);
      }
      return live;
    };

    /**
     * Copies src/ into dst/ with rsync, the source pinned by descriptor. rsync says each item as
     * it is done (--out-format: its itemize code and length only, never a name), which counts
     * the files and bytes copied for job.progress().
     */
    const bulkCopy = async (job: Job, src: DirRef, dst: string, cloned?: { files: number; bytes: number }): Promise<void> => {
      // --force: a directory the clone made that the original has since replaced by a symlink or
      // a file is replaced too (in the root-only staging copy), as a fresh copy would.
      // --sparse whatever the flags say: the room check counts a sparse file by what it allocates.
      const args = [...opts.flags, ...(opts.flags.includes('--sparse') ? [] : ['--sparse']), ...(cloned ? ['--force'] : []), '--out-format=%i %l', '--', `/proc/${process.pid}/fd/${src.fd}/`, `${dst}/`];
      // rsync sends nothing for what was cloned: its counts go on from the clone's.
      const counted = { files: cloned?.files ?? 0, bytes: cloned?.bytes ?? 0 };
      const onStdoutLine = (line: string): void => {
        const item = copiedItem(line);
        if (item === undefined) return;
        counted.files += 1;
        counted.bytes += item;
        job.progress(counted);
      };
      await retry(
        async () => {
          // The watchdog (watchdog.ts): a copy that makes no progress for stallSeconds is stopped.
          const stall = new AbortController();
          let watch: ProgressWatch | undefined;
          try {
            await run(opts.command, args, {
              signal: AbortSignal.any([job.signal, stall.signal]),
              onStdoutLine: (line) => {
                watch?.touch();
                onStdoutLine(line);
              },
              onSpawn: (pid) => (watch = watchProgress(pid, opts.stallSeconds * 1000, () => stall.abort())),
            });
          } catch (error) {
            if (stall.signal.aborted && !job.signal.aborted) throw new CopyStalledError(opts.stallSeconds);
            if (error instanceof CommandError && error.exitCode === VANISHED) throw new TransientError(error.message);
            if (error instanceof CommandError) throw explainCopyError(error);
            throw error;
          } finally {
            watch?.stop();
          }
        },
        {
          attempts: opts.copyAttempts,
          firstDelayMs: 500,
          transient: (e) => e instanceof TransientError,
          onRetry: (_e, n) => job.log.info(`copy: files vanished during the copy, copying again (try ${n + 1})`),
          signal: job.signal,
        },
      );
    };

    /**
     * Copies what a pass decided to copy, each only if the dataset side is still what was judged
     * (compare-and-copy: a user's edit made meanwhile is never overwritten, the next pass judges
     * again). A step of its own (`<phase>/catch-up-copy`) when there is anything to copy.
     */
    const applyCopies = async (job: Job, original: DirRef, live: DirRef, copies: Copy[], sameFiles: string[], conflicts: string[]): Promise<Applied> => {
      const done: Applied = { copied: 0, bytes: 0, changes: [], changing: false };
      // Directories the original holds and the dataset lacks are made with the original's metadata.
      const known = new Map(copies.map((c) => [c.rel, c.o]));
      const src = new Dirs(original);
      const dst = new Dirs(live, (rel) => known.get(rel));
      const copyOne = async (from: DirRef, to: DirRef, rel: string, o: EntryInfo, d: EntryInfo | null): Promise<void> => {
        done.bytes += (await copyEntry(from, nameOf(rel), to, nameOf(rel), o, { replaces: d })).bytes;
        done.copied++;
        // The new baseline is what the dataset now holds (a file still being written may
        // have grown during the copy), so that a later change is seen as the original's own.
        done.changes.push([rel, metaOf(await statAt(to, nameOf(rel)))]);
      };
      const apply = async (): Promise<void> => {
        for (const { rel, o, d } of copies.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))) {
          try {
            const [from, to] = await Promise.all([src.get(parentOf(rel)), dst.get(parentOf(rel))]);
            if (rel === '') {
              // The root's own metadata, through the open directory, if it is still as judged.
              const now = await live.info();
              if (d === undefined || now.ctimeExactMs !== d.ctimeExactMs) throw new TreeChangedError('', 'the dataset\'s top directory changed after the copy was decided');
              await live.handle.chown(o.uid, o.gid);
              await live.handle.chmod(o.mode & 0o7777);
              done.copied++;
              done.changes.push([rel, metaOf(o)]);
              continue;
            }
            await copyOne(from, to, rel, o, d ?? null);
            // A whole directory new in the original: everything below it is new too.
            if (o.type === 'dir') await copyBelow(from, rel, o, copyOne, src, dst, known, conflicts);
          } catch (error) {
            if (error instanceof TreeChangedError) done.changing = true;
            else if (error instanceof UnsupportedEntryError) conflicts.push(`${displayPath(rel)}: a late ${o.type} cannot be caught up; copy it by hand`);
            else throw error;
          }
        }
        for (const rel of sameFiles) {
          const [from, to] = await Promise.all([src.get(parentOf(rel)), dst.get(parentOf(rel))]);
          const [a, b] = await Promise.all([sha256Of(from, nameOf(rel)), sha256Of(to, nameOf(rel))]).catch((error: unknown) => {
            if (!(error instanceof TreeChangedError)) throw error;
            done.changing = true;
            return ['', ''];
          });
          if (a !== b) conflicts.push(`${displayPath(rel)}: content differs although size and time are equal`);
        }
      };
      try {
        if (copies.length > 0) await job.step('catch-up-copy', `copy ${copies.length} entr${copies.length === 1 ? 'y' : 'ies'} the original changed`, apply);
        else await apply();
      } finally {
        await Promise.all([src.close(), dst.close()]);
      }
      return done;
    };

    /** Copies everything below `rel`, a directory new in the original just copied (nothing was in the dataset there). */
    const copyBelow = async (
      from: DirRef,
      rel: string,
      o: EntryInfo,
      copyOne: (from: DirRef, to: DirRef, rel: string, o: EntryInfo, d: null) => Promise<void>,
      src: Dirs,
      dst: Dirs,
      known: Map<string, EntryInfo>,
      conflicts: string[],
    ): Promise<void> => {
      const child = await openChild(from, nameOf(rel), o);
      try {
        const below: EntryInfo[] = [];
        await walk(child, (e) => {
          if (e.rel !== '') below.push(e);
        });
        for (const e of below) known.set(`${rel}/${e.rel}`, e);
        for (const e of below.sort((a, b) => (a.rel < b.rel ? -1 : 1))) {
          const full = `${rel}/${e.rel}`;
          if (e.crossDevice) {
            conflicts.push(`${displayPath(full)}: another filesystem is mounted there in the original`);
            continue;
          }
          const [f, t] = await Promise.all([src.get(parentOf(full)), dst.get(parentOf(full))]);
          await copyOne(f, t, full, e, null);
        }
      } finally {
        await child.close();
      }
    };

    /**
     * One pass over the original and the live dataset: copy what the three-way rule says to copy,
     * adopt what is already equal, collect conflicts. A pass that copies nothing, finds no
     * conflict and sees no change under way is a full verification; `verified` then holds every
     * entry it saw in the original (what the removal may remove). The original's subtree below a
     * directory the dataset renamed, deleted or replaced is walked too: each entry changed there
     * since the baseline is a conflict. Once a removal began (and was interrupted), the directories
     * it locked (root's, 0700) are taken for their baseline's metadata, in every pass of a recover.
     */
    const pass = async (job: Job, original: DirRef, live: DirRef, manifest: Manifest | undefined, verified?: VerifiedSet): Promise<PassResult> => {
      const resumed = removalBegan(job);
      const copies: Copy[] = [];
      const conflicts: string[] = [];
      const adopted: [string, Meta][] = [];
      const sameFiles: string[] = [];
      let entries = 0;
      try {
        /** The three-way rule for one entry (o: the original's, b: the baseline, d: the dataset's). */
        const judge = (rel: string, o: EntryInfo, b: Meta | undefined, d: EntryInfo | undefined, alone: boolean): void => {
          const where = displayPath(rel) || '/';
          if (resumed && b !== undefined) o = unlocked(o, b, verified);
          if (alone) {
            if (decideBelowGone(o, b) === 'conflict') conflicts.push(`${where}: changed in the original${b ? ` (${difference(b, o)})` : ' (new)'}, below a directory renamed, deleted or replaced in the dataset`);
            return;
          }
          let decision = decide(o, b, d);
          if (decision === 'copy' && manifest === undefined) decision = 'conflict';
          if (decision === 'adopt') adopted.push([rel, metaOf(o)]);
          else if (decision === 'copy') copies.push({ rel, o, d });
          else if (decision === 'conflict') {
            conflicts.push(
              manifest === undefined
                ? `${where}: differs (${d ? difference(metaOf(o), metaOf(d)) : 'missing from the dataset'}) and there is no record of what was copied to tell whose change it is`
                : d && b && same(b, d) && d.type !== o.type
                  ? `${where}: became a ${o.type} in the original; the ${d.type} in the dataset is never replaced by another type`
                  : `${where}: changed in the original${b ? ` (${difference(b, o)})` : ' (new)'} and in the dataset${d ? ` (${difference(b ?? o, d)})` : ' (deleted)'}`,
            );
          }
          if (opts.verifyContent && o.type === 'file' && d && decision === 'adopt') sameFiles.push(rel);
          else if (opts.verifyContent && o.type === 'file' && d && decision === 'keep' && b && d.size === b.size && Math.floor(d.mtimeMs) === Math.floor(b.mtimeMs)) sameFiles.push(rel);
        };
        ({ entries } = await walkPair(
          original,
          live,
          (rel, o, d, alone) => {
            if (o === undefined) return;
            if (o.crossDevice) {
              conflicts.push(`${displayPath(rel) || '/'}: another filesystem is mounted there in the original`);
              return;
            }
            verified?.add(o);
            // The baseline is read from disk a directory at a time (then known without waiting).
            const b = manifest?.get(rel);
            if (b instanceof Promise) return b.then((m) => judge(rel, o, m, d, alone === true));
            judge(rel, o, b, d, alone === true);
          },
          { signal: job.signal, alone: true },
        ));
      } catch (error) {
        if (error instanceof TreeChangedError) return { copied: 0, bytes: 0, conflicts, changing: true, entries };
        throw error;
      }
      let applied: Applied = { copied: 0, bytes: 0, changes: [], changing: false };
      if (copies.length > 0 || sameFiles.length > 0) applied = await applyCopies(job, original, live, copies, sameFiles, conflicts);
      if (manifest !== undefined) await manifest.record([...adopted, ...applied.changes]);
      return { copied: applied.copied, bytes: applied.bytes, conflicts, changing: applied.changing, entries };
    };

    /** Conflicts are final: both versions are kept, and the message says how to settle them. */
    const conflictError = (job: Job, aside: string, conflicts: readonly string[]): Error =>
      new Error(
        `${conflicts.length} entr${conflicts.length === 1 ? 'y was' : 'ies were'} changed both in the original and in the dataset (${conflicts.slice(0, 3).join('; ')}${conflicts.length > 3 ? '; …' : ''}); ` +
          `neither was overwritten, and the original is kept at ${quoteName(aside)}: for each, keep the version you want in ${quoteName(job.path)} and delete it from the kept original, then run 'zfs-dynamic-creator recover'`,
      );

    /** Entries moved into the original during its removal: left where they are, the original kept. */
    const unverifiedError = (job: Job, aside: string, error: UnverifiedEntriesError): Error => {
      const named = error.rels.slice(0, 3).map((rel) => quoteName(`${dirname(aside)}/${displayPath(rel)}`));
      for (const rel of error.rels) job.log.warn(`not removed (the verification never saw it): ${quoteName(`${dirname(aside)}/${displayPath(rel)}`)}`, { step: 'cleanup/remove-original' });
      return new Error(
        `${error.count} entr${error.count === 1 ? 'y' : 'ies'} appeared in the original during its removal that the verification never saw (${named.join(', ')}${error.count > 3 ? ', …' : ''}): ` +
          `left where ${error.count === 1 ? 'it is' : 'they are'}, and what is left of the original is kept at ${quoteName(aside)}; give each back to its owner, then run 'zfs-dynamic-creator recover'`,
      );
    };

    hooks.prepare.tapPromise(NAME, async (root) => {
      // An rsync that can be led out of the tree by a directory swapped for a symlink is refused.
      const rsync = await rsyncChecked(opts.command);
      if (!rsync.ok) throw new RefusedError(rsync.detail);
      // A block-cloning probe a killed process left in the root-only holding directory.
      if (!root.dryRun) {
        for (const name of await removeStaleProbes(holdingDir(root.rootdir))) root.log.info(`removed ${quoteName(name)}, a block-cloning probe left by a process that is gone`);
      }
    });

    // Another filesystem mounted inside the directory would be copied into the dataset and,
    // worse, emptied with the original: such a directory is refused until it is unmounted.
    const refuseMountsBelow = async (path: string): Promise<void> => {
      const mounts = await mountsBelow(path);
      if (mounts.length > 0) {
        throw new RefusedError(`${quoteName(mounts[0]!)} is a filesystem mounted inside ${quoteName(path)}; unmount it first`);
      }
    };
    hooks.filter.tapPromise(NAME, async (job) => {
      await refuseMountsBelow(job.path);
      return undefined;
    });

    hooks.migrate.tapPromise(NAME, async (job) => {
      const { staging } = jobPaths(job.root.rootdir, job.name);
      if (job.dryRun) {
        const path = await describeCopyPath(job, { setting: opts.blockCloning });
        await job.step('copy', `copy ${quoteName(job.path)} into ${quoteName(staging)}: ${path}`, async () => undefined);
        return;
      }
      const identity: Identity | undefined = job.record.identity;
      if (!identity) throw new Error('the original directory was never identified');
      const original = await openDir(job.path, identity);
      try {
        await job.step('copy', `copy ${quoteName(job.path)} into ${quoteName(staging)}`, async () => {
          // Block cloning first where it works (by descriptor, like everything read from the
          // original); the rsync then sends no data for what was cloned and does the rest.
          const cloned = await cloneIntoStaging(job, original, staging, { setting: opts.blockCloning });
          await bulkCopy(job, original, staging, cloned);
        });
        await job.step('seal', `check the copy against the original and record it as the baseline`, async () => {
          const copy = await openDir(staging);
          let writer: ManifestWriter | undefined;
          try {
            const extra: { rel: string; info: EntryInfo }[] = [];
            /** Directories of the copy taken out whole: nothing below them is recorded. */
            const dropped = new Set<string>();
            /** A directory's entries, until all are seen: then written as its block of the manifest. */
            const listing = new Map<string, [string, Meta][]>();
            let missing = 0;
            for (let attempt = 1; ; attempt++) {
              await writer?.abort();
              const w = (writer = await ManifestWriter.create(manifestOf(job)));
              extra.length = 0;
              dropped.clear();
              listing.clear();
              missing = 0;
              try {
                await walkPair(
                  original,
                  copy,
                  (rel, o, s) => {
                    if (rel !== '' && dropped.has(parentOf(rel))) {
                      if (s?.type === 'dir') dropped.add(rel);
                      return;
                    }
                    if (s === undefined) {
                      if (o !== undefined) missing++;
                      return;
                    }
                    // In the copy but not (as such) in the original: deleted meanwhile, or read
                    // through a symlink swapped in during the copy. Never let it become visible.
                    if (o === undefined || o.type !== s.type || o.uid !== s.uid || o.gid !== s.gid || o.crossDevice) {
                      if (rel === '') throw new Error('the copy\'s top directory does not match the original');
                      extra.push({ rel, info: s });
                      if (s.type === 'dir') dropped.add(rel);
                      return;
                    }
                    // Not what the original holds now (changed after rsync read it, or read through
                    // a swapped symlink): dropped, and copied again below by descriptor.
                    if (s.type !== 'dir' && !same(o, s)) {
                      extra.push({ rel, info: s });
                      return;
                    }
                    if (rel === '') return w.block(null, [['', metaOf(s)]]);
                    const parent = parentOf(rel);
                    let entries = listing.get(parent);
                    if (entries === undefined) listing.set(parent, (entries = []));
                    entries.push([nameOf(rel), metaOf(s)]);
                  },
                  {
                    signal: job.signal,
                    listed: (rel) => {
                      const entries = listing.get(rel);
                      listing.delete(rel);
                      return entries && w.block(rel, entries);
                    },
                  },
                );
                break;
              } catch (error) {
                if (!(error instanceof TreeChangedError) || attempt >= 5) throw error;
              }
            }
            // Removed from the staging copy (root-only until the commit), by descriptor.
            for (const { rel, info } of extra.sort((a, b) => (a.rel < b.rel ? 1 : -1))) {
              const parent = rel.includes('/') ? await ensureDir(copy, parentOf(rel)) : copy;
              try {
                if (info.type === 'dir') await removeTree(parent, nameOf(rel), { dev: info.dev, ino: info.ino });
                else await unlink(at(parent, nameOf(rel)));
              } finally {
                if (parent !== copy) await parent.close();
              }
            }
            if (extra.length > 0) job.log.info(`${extra.length} entr${extra.length === 1 ? 'y' : 'ies'} of the copy not as in the original (changed or deleted meanwhile) taken out`, { step: 'migrate/seal' });
            await writer.commit();
            writer = undefined;
            // What the original holds and the copy now lacks is copied in by descriptor, still
            // before the commit, so that the copy is complete when it becomes visible. (A copy
            // that matched the original entry for entry needs no second walk for that.)
            if (extra.length === 0 && missing === 0) return;
            const refill = await pass(job, original, copy, await Manifest.open(manifestOf(job)));
            if (refill.copied > 0) job.log.info(`${refill.copied} entr${refill.copied === 1 ? 'y' : 'ies'} copied again by descriptor`, { step: 'migrate/seal' });
          } finally {
            await writer?.abort();
            await copy.close();
          }
        });
      } finally {
        await original.close();
      }
    });

    hooks.swap.tapPromise({ name: NAME, stage: STAGE.catchUp }, async (job) => {
      if (job.dryRun) {
        await job.step('catch-up', 'copy what the original changed during the swap, then verify', async () => undefined);
        return;
      }
      const found = await openAside(job);
      if (!found) return; // already removed by an earlier, interrupted run
      const live = await openLive(job);
      try {
        const manifest = await openBaseline(job, found.path);
        for (let round = 1; ; round++) {
          let full: unknown;
          const r = await job.step('catch-up', `catch up what the original changed (round ${round})`, () => pass(job, found.ref, live, manifest), { dryRun: NO_PASS }).catch((e: unknown) => {
            if ((full = noRoom(job, found.path, e)) === e) throw e;
            return undefined;
          });
          if (r === undefined) {
            // Published all the same (users see their dataset); the cleanup keeps the original and says why.
            job.log.warn(oneLine(full), { step: 'swap/catch-up' });
            return;
          }
          if (r.copied === 0 && r.conflicts.length === 0 && !r.changing) {
            job.log.info(`verified: all ${r.entries} entries of the original are in ${job.record.filesystem ?? 'the new filesystem'} (or were changed there since)`, { step: 'swap/verify' });
            return;
          }
          if (r.copied > 0) job.log.info(`${r.copied} entr${r.copied === 1 ? 'y' : 'ies'} (${r.bytes} bytes) caught up`, { step: 'swap/catch-up' });
          if (round >= opts.catchUpRounds || r.conflicts.length > 0) {
            job.log.info('the cleanup waits for the original to stay unchanged, catches up and verifies before removing anything', { step: 'swap/verify' });
            return;
          }
          await job.waiting('a pause between catch-up passes', () => sleep(Math.min(5000, 250 * 2 ** round)));
        }
      } finally {
        await Promise.all([found.ref.close(), live.close()]);
      }
    });

    hooks.cleanup.tapPromise({ name: NAME, stage: STAGE.retire }, async (job) => {
      if (job.dryRun) {
        await job.step('remove-original', `after ${opts.graceSeconds} s without changes, verify again and remove the original`, async () => undefined);
        return;
      }
      const found = await openAside(job);
      if (!found) {
        await removeManifest(manifestOf(job));
        return;
      }
      const { ref: original, path: aside } = found;
      const live = await openLive(job);
      try {
        const manifest = await openBaseline(job, aside);
        // An earlier run verified the original and began removing it, then died: what is left
        // needs no grace period again, only a pass proving it is all represented.
        const resuming = removalBegan(job);
        const deadline = Date.now() + opts.maxGraceSeconds * 1000;
        let caughtUp = 0;
        let busy = '';
        /** Every entry the verifying pass saw in the original: the removal removes nothing else. */
        let verified: VerifiedSet;
        for (;;) {
          let quiet = true;
          if (!resuming) {
            // Waiting, not work: the grace period holds no work slot (other jobs copy meanwhile).
            const wait = await job.waiting('grace period', () => waitQuiet(job, original, opts.graceSeconds * 1000, deadline));
            ({ quiet, busy } = wait);
          }
          const seen = new VerifiedSet(original.dev);
          const r = await job.step('catch-up', `catch up late changes from ${quoteName(aside)}`, () => pass(job, original, live, manifest, seen).catch((e: unknown) => Promise.reject(noRoom(job, aside, e))), { dryRun: NO_PASS });
          caughtUp += r.copied;
          if (r.copied > 0) job.log.warn(`${r.copied} late change(s) to the original were caught up after the swap (old NFS handles or open files)`, { step: 'cleanup/catch-up' });
          if (quiet && r.copied === 0 && !r.changing) {
            if (r.conflicts.length > 0) {
              // Every one named in the log (and the first in the job's error, which status shows).
              const shown = r.conflicts.slice(0, 1000);
              for (const c of shown) job.log.warn(`conflict: ${c}`, { step: 'cleanup/conflict' });
              if (r.conflicts.length > shown.length) job.log.warn(`… and ${r.conflicts.length - shown.length} more conflict(s)`, { step: 'cleanup/conflict' });
              throw conflictError(job, aside, r.conflicts);
            }
            verified = seen;
            break;
          }
          if (Date.now() > deadline) {
            const why = busy === '' ? 'kept changing' : `was still in use (${busy})`;
            throw new Error(`the original at ${quoteName(aside)} ${why} for ${opts.maxGraceSeconds} s; it is kept, not removed`);
          }
        }
        // What the verified copy holds, for the conversion's history (the filesystem plugin records it).
        if (manifest !== undefined) await job.set({ copied: await copiedOf(manifest) });
        await job.step('remove-original', `remove the verified original ${quoteName(aside)}${caughtUp ? ` (${caughtUp} late change(s) caught up)` : ''}`, async () => {
          const holding = await openDir(dirname(aside));
          try {
            await removeTree(holding, basename(aside), original.identity, { signal: job.signal, verified });
          } catch (error) {
            if (error instanceof UnverifiedEntriesError) throw unverifiedError(job, aside, error);
            throw error;
          } finally {
            await holding.close();
          }
        });
        await removeManifest(manifestOf(job));
      } finally {
        await Promise.all([original.close(), live.close()]);
      }
    });

    hooks.rollback.tapPromise(NAME, async (job) => {
      await removeManifest(manifestOf(job));
    });

    /**
     * Waits until the original has stayed unchanged for `graceMs` and nothing holds anything in it
     * (any process, any mount namespace, the NFS server's open state). Returns quiet: false at
     * the deadline.
     *
     * Changes are seen through inotify on the tree's directories, so a quiet tree is walked only
     * at the start, whenever an event says something changed (at most every other walk's time),
     * every FULL_CHECK_MS as a fallback, and once more at the end to confirm. A tree with more
     * directories than watches can cover is walked every other walk's time instead.
     */
    async function waitQuiet(job: Job, original: DirRef, graceMs: number, deadline: number): Promise<{ quiet: boolean; busy: string }> {
      let reported = '';
      let busy = '';
      let events = 0;
      const watches = new DirectoryWatches(`/proc/${process.pid}/fd/${original.fd}`, () => void events++);
      const digest = async (): Promise<Awaited<ReturnType<typeof treeDigest>> | undefined> => {
        const dirs: string[] = [];
        // One more than can be watched is enough to know that watches cannot cover the tree.
        const result = await treeDigest(original, { signal: job.signal, visit: (e) => void (e.type === 'dir' && dirs.length <= MAX_WATCHES && dirs.push(e.rel)) }).catch((e: unknown) => {
          if (!(e instanceof TreeChangedError)) return Promise.reject(e);
          job.log.debug(`the original changed while it was being looked at: ${e.message}`, { step: 'cleanup/wait' });
          return undefined;
        });
        if (result) watches.update(dirs);
        return result;
      };
      /** Says (once per change of cast) who keeps the original busy; returns how many hold it. */
      const report = async (index: Awaited<ReturnType<typeof treeDigest>>['index'] | undefined, changed: boolean): Promise<number> => {
        // Mounts of the original in any mount namespace, and its owner's descriptors in flight, too.
        const tree = index ? await treeOf(original.fd).catch(() => undefined) : undefined;
        const holders = index ? await holdersOf(index, { trees: tree ? [tree] : [] }) : [];
        busy = describeHolders(holders);
        const who =
          holders.length > 0 ? `${describeHolders(holders)} still hold files in the original` : changed ? 'the original is still changing (NFS clients or processes elsewhere)' : '';
        if (who !== '' && who !== reported) job.log.info(`waiting: ${who}`, { step: 'cleanup/wait' });
        reported = who;
        return holders.length;
      };
      try {
        let walkMs = Date.now();
        let last = await digest();
        walkMs = Date.now() - walkMs;
        let lastWalk = Date.now();
        let since = Date.now();
        let seenEvents = events;
        // No grace period asked for: the walk just made is the look; only holders can delay it.
        if (graceMs === 0 && last !== undefined && events === seenEvents && (await report(last.index, false)) === 0) return { quiet: true, busy: '' };
        for (;;) {
          if (job.signal.aborted) throw new Error('stopped during the grace period; the original is kept');
          const now = Date.now();
          const eventful = events !== seenEvents;
          if (eventful) since = now;
          const graceOver = last !== undefined && now - since >= graceMs;
          const due = now - lastWalk >= Math.max(1000, 2 * walkMs);
          // Walk again: to confirm at the end of the grace period, after events (to watch new
          // directories and see whether it settled), when watches cannot be trusted, or as a fallback.
          const confirm = graceOver && (lastWalk < since + graceMs || due);
          if (confirm || (due && (eventful || !watches.complete || last === undefined)) || now - lastWalk >= FULL_CHECK_MS) {
            seenEvents = events;
            const t = Date.now();
            const fresh = await digest();
            walkMs = Date.now() - t;
            lastWalk = Date.now();
            const changed = fresh === undefined || last === undefined || fresh.digest !== last.digest;
            last = fresh;
            if (changed) {
              since = Date.now();
              await report(fresh?.index, true);
            } else if (graceOver && events === seenEvents && fresh !== undefined) {
              // Unchanged for the whole grace period: and nobody holding anything in it?
              if ((await report(fresh.index, false)) === 0) return { quiet: true, busy: '' };
            }
          }
          if (Date.now() > deadline) return { quiet: false, busy };
          const untilGrace = graceMs - (Date.now() - since);
          // As the quiet period says it: how far into the grace period, of how long.
          job.progress({ note: `quiet for ${Math.floor(Math.max(0, Date.now() - since) / 1000)} of ${graceMs / 1000} s` });
          await sleep(Math.max(10, Math.min(1000, untilGrace > 0 ? untilGrace : 1000, deadline - Date.now())));
        }
      } finally {
        watches.close();
      }
    }
  },
});
