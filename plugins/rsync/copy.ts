/**
 * The copy (migrate's first step): the parallel copy of the regular files (parallel-copy.ts),
 * cloned where the pool shares blocks, then rsync
 * -aHAX, the source pinned by descriptor (/proc/<pid>/fd/<n>: the identity-checked directory,
 * whatever its path becomes), stopped by the watchdog when it makes no progress.
 */
import { CommandError, TransientError, retry, run, type DirRef, type Job } from '../../src/index.js';
import type { RsyncContext } from './options.js';
import { copyFilesFirst, type CopyStageOptions } from './parallel-copy.js';
import { CopyStalledError, watchProgress, type ProgressWatch } from './watchdog.js';

/** rsync exit codes: 23 partial transfer (an error), 24 vanished source files (a race, retried). */
const VANISHED = 24;

const NO_SPACE = /No space left on device|Disk quota exceeded|quota exceeded/i;

/**
 * rsync's last line only says "some files were not transferred (see previous errors)": the
 * message names the first real error instead, and says plainly when it is a full pool or quota.
 */
export function explainCopyError(error: CommandError): Error {
  const lines = error.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter((l) => l.startsWith('rsync: ') || l.startsWith('rsync error: '));
  const telling =
    lines.find((l) => NO_SPACE.test(l)) ??
    lines.find((l) => l.startsWith('rsync: ') && !/Broken pipe|connection unexpectedly closed/.test(l));
  if (telling === undefined) return error;
  const cause = NO_SPACE.test(telling) ? (/quota/i.test(telling) ? 'the new filesystem is over its quota: ' : 'no space left: ') : '';
  const more = errors.filter((l) => l.startsWith('rsync: ')).length - 1;
  return new Error(`copy failed: ${cause}${telling}${more > 0 ? ` (and ${more} more error(s))` : ''} (rsync exit ${error.exitCode})`);
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

/** One run of rsync, stopped by the watchdog (watchdog.ts) when it makes no progress for stallSeconds. */
async function runWatched(ctx: RsyncContext, job: Job, args: string[], onLine: (line: string) => void): Promise<void> {
  const { command, stallSeconds } = ctx.options;
  const stall = new AbortController();
  let watch: ProgressWatch | undefined;
  try {
    await run(command, args, {
      signal: AbortSignal.any([job.signal, stall.signal]),
      onStdoutLine: (line) => {
        watch?.touch();
        onLine(line);
      },
      onSpawn: (pid) => (watch = watchProgress(pid, stallSeconds * 1000, () => stall.abort())),
    });
  } catch (error) {
    if (stall.signal.aborted && !job.signal.aborted) throw new CopyStalledError(stallSeconds);
    if (error instanceof CommandError && error.exitCode === VANISHED) throw new TransientError(error.message);
    if (error instanceof CommandError) throw explainCopyError(error);
    throw error;
  } finally {
    watch?.stop();
  }
}

/**
 * Copies src/ into dst/ with rsync, the source pinned by descriptor. rsync says each item as
 * it is done (--out-format: its itemize code and length only, never a name), which counts
 * the files and bytes copied for job.progress().
 */
async function bulkCopy(ctx: RsyncContext, job: Job, src: DirRef, dst: string, first?: { files: number; bytes: number }): Promise<void> {
  const { flags } = ctx.options;
  // --force: a directory the parallel copy made that the original has since replaced by a symlink or
  // a file is replaced too (in the root-only staging copy), as a fresh copy would.
  // --sparse whatever the flags say: the room check counts a sparse file by what it allocates.
  const args = [
    ...flags,
    ...(flags.includes('--sparse') ? [] : ['--sparse']),
    ...(first ? ['--force'] : []),
    '--out-format=%i %l',
    '--',
    `/proc/${process.pid}/fd/${src.fd}/`,
    `${dst}/`,
  ];
  // rsync sends nothing for what the parallel copy copied: its counts go on from there.
  const counted = { files: first?.files ?? 0, bytes: first?.bytes ?? 0 };
  const onLine = (line: string): void => {
    const item = copiedItem(line);
    if (item === undefined) return;
    counted.files += 1;
    counted.bytes += item;
    job.progress(counted);
  };
  await retry(() => runWatched(ctx, job, args, onLine), {
    attempts: ctx.options.copyAttempts,
    firstDelayMs: 500,
    transient: (e) => e instanceof TransientError,
    onRetry: (_e, n) => job.log.info(`copy: files vanished during the copy, copying again (try ${n + 1})`),
    signal: job.signal,
  });
}

/** The copy of the original (open, identity-checked) into the staging dataset. */
export async function copyIn(ctx: RsyncContext, job: Job, original: DirRef, staging: string): Promise<void> {
  // The parallel copy first (by descriptor, like everything read from the original); the rsync
  // then sends no data for what it copied and does the rest.
  const first = await copyFilesFirst(job, original, staging, stageOptions(ctx));
  await bulkCopy(ctx, job, original, staging, first);
}

/** The parallel copy's settings, from the plugin's options. */
export function stageOptions(ctx: RsyncContext): CopyStageOptions {
  const { blockCloning, parallelCopy, copyConcurrency } = ctx.options;
  return { setting: blockCloning, parallel: parallelCopy, concurrency: copyConcurrency };
}
