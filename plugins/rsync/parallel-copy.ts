/**
 * The copy's first stage (before the bulk rsync): the regular files of the original copied by
 * descriptor, `copyConcurrency` at once (clone.ts cloneTree), by the path the `blockCloning`
 * setting and the pool allow:
 *   auto    a probe (once per root and pool) says whether copy_file_range shares blocks into the
 *           staging dataset; either way the data goes by copy_file_range (cloned, or copied in
 *           the kernel where the pool cannot clone);
 *   always  copy_file_range without probing;
 *   off     never copy_file_range: read() and write() through a bounded buffer, so that no block
 *           is shared even where the pool could clone.
 * rsync -aHAX then does the rest (directories, owners, modes, xattrs, ACLs, symlinks, specials,
 * anything changed or left over) and sends no data for what was copied. One log line says which
 * path was taken.
 */
import { jobPaths, type DirRef, type Job } from '../../src/index.js';
import { blockCloningSupport, cloneTree, probeBlockCloning, type BlockCloningProbe, type CloneResult, type DataCopy } from './clone.js';

/** The rsync plugin's `blockCloning` option. */
export type BlockCloningSetting = 'auto' | 'off' | 'always';

export interface CopyStageOptions {
  readonly setting: BlockCloningSetting;
  /** The parallel copy at all (false: rsync alone). */
  readonly parallel: boolean;
  /** Files copied at once. */
  readonly concurrency: number;
  /** The zpool command (default zpool). */
  readonly zpool?: string;
}

/** Probe results by root and pool, for the life of the process (a daemon probes each root once). */
const probes = new Map<string, Promise<BlockCloningProbe>>();

function probeOnce(key: string, probe: () => Promise<BlockCloningProbe>): Promise<BlockCloningProbe> {
  let known = probes.get(key);
  if (known === undefined) {
    known = probe();
    probes.set(key, known);
    // A probe that failed (zpool missing, a command refused) is tried again by the next job.
    known.catch(() => probes.delete(key));
  }
  return known;
}

const mib = (bytes: number): string => (bytes / 1048576).toFixed(bytes > 0 && bytes < 10 * 1048576 ? 1 : 0);

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The pool of the job's new filesystem (recorded by the zfs plugin in its provision). */
function poolOf(job: Job): string | undefined {
  const fs = job.record.filesystem;
  return fs === undefined || fs === '' ? undefined : fs.split('/')[0];
}

/** How the data goes, and what the log says of it. */
interface DataPath {
  readonly data: DataCopy;
  /** Whether blocks are shared (the probe said so). */
  readonly clones: boolean;
  /** The path in words, e.g. "copied in the kernel (block cloning not available: …)". */
  readonly words: string;
}

/** auto: the probe's answer (once per root and pool), as a data path. */
async function probedPath(job: Job, staging: string, options: CopyStageOptions): Promise<DataPath> {
  const kernel = (reason: string): DataPath => ({
    data: 'kernel',
    clones: false,
    words: `copied in the kernel (block cloning not available: ${reason})`,
  });
  const pool = poolOf(job);
  if (pool === undefined) return kernel('no dataset recorded for the job');
  let probe: BlockCloningProbe;
  try {
    const { holding } = jobPaths(job.root.rootdir, job.name);
    probe = await probeOnce(`${job.root.rootdir}\0${pool}`, () =>
      probeBlockCloning({
        pool,
        sourceDir: holding,
        targetDir: staging,
        ...(options.zpool !== undefined ? { zpool: options.zpool } : {}),
        signal: job.signal,
      }),
    );
  } catch (error) {
    if (job.signal.aborted) throw error;
    return kernel(`the probe failed: ${message(error)}`);
  }
  return probe.clones ? { data: 'kernel', clones: true, words: 'block cloning' } : kernel(probe.reason);
}

async function dataPath(job: Job, staging: string, options: CopyStageOptions): Promise<DataPath> {
  if (options.setting === 'off')
    return { data: 'userspace', clones: false, words: 'read and written (blockCloning: off, no block shared)' };
  if (options.setting === 'always') return { data: 'kernel', clones: false, words: 'copy_file_range, not probed (blockCloning: always)' };
  return probedPath(job, staging, options);
}

/** The log line of a parallel copy that finished. */
function finished(path: DataPath, concurrency: number, result: CloneResult): string {
  const left = result.skipped > 0 ? `; ${result.skipped} entr${result.skipped === 1 ? 'y' : 'ies'} left to rsync` : '';
  const what = path.clones
    ? `${result.files} files cloned, ${mib(result.bytes)} MiB shared`
    : `${result.files} files, ${mib(result.bytes)} MiB`;
  return `copy: parallel copy, ${concurrency} files at once, ${path.words}: ${what}${left}; then rsync for the rest`;
}

/**
 * The copy's first stage: the original (an open, identity-checked directory) copied into
 * `staging` by descriptor, by the path `options` and the pool allow (see the top of this file).
 * Logs one line saying which path the copy took. The rsync that follows completes everything
 * either way; a parallel copy that fails half-way is logged and left to it. Returns what was
 * copied (undefined when nothing was).
 */
export async function copyFilesFirst(
  job: Job,
  original: DirRef,
  staging: string,
  options: CopyStageOptions,
): Promise<CloneResult | undefined> {
  const fields = { step: 'migrate/copy' };
  if (!options.parallel) {
    job.log.info('copy: rsync alone (parallelCopy: false)', fields);
    return undefined;
  }
  const path = await dataPath(job, staging, options);
  let result: CloneResult;
  try {
    result = await cloneTree(original, staging, job.signal, {
      concurrency: options.concurrency,
      data: path.data,
      onFile: (sofar) => job.progress(sofar),
    });
  } catch (error) {
    if (job.signal.aborted) throw error;
    job.log.warn(`copy: the parallel copy stopped (${message(error)}); rsync copies the rest`, fields);
    return undefined;
  }
  job.log.info(finished(path, options.concurrency, result), fields);
  return result;
}

/** What a dry run says about the copy: the path it would take, learnt without writing anything. */
export async function describeCopyPath(job: Job, options: CopyStageOptions): Promise<string> {
  if (!options.parallel) return 'rsync alone (parallelCopy: false)';
  const first = `parallel copy, ${options.concurrency} files at once`;
  if (options.setting === 'off') return `${first}, read and written (blockCloning: off, no block shared), then rsync`;
  if (options.setting === 'always') return `${first}, copy_file_range, not probed (blockCloning: always), then rsync`;
  const kernel = (reason: string): string => `${first}, copied in the kernel (block cloning not available: ${reason}), then rsync`;
  const pool = poolOf(job);
  if (pool === undefined) return kernel('no dataset recorded for the job');
  const known = probes.get(`${job.root.rootdir}\0${pool}`);
  if (known !== undefined) {
    const probe = await known.catch(() => undefined);
    if (probe !== undefined) return probe.clones ? `${first}, block cloning (probed earlier), then rsync` : kernel(probe.reason);
  }
  try {
    const support = await blockCloningSupport(pool, options.zpool ?? 'zpool', job.signal);
    return support.possible
      ? `${first}, block cloning if a probe clone into the staging dataset shares blocks (feature@block_cloning is ${support.feature} on pool ${pool}), copied in the kernel otherwise; then rsync`
      : kernel(support.reason);
  } catch (error) {
    return kernel(message(error));
  }
}
