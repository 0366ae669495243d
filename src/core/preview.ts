/**
 * A dry filter pass: what the filter phase would decide for a directory, without a job, a lock,
 * a journal record or a log line. The filter hook is side-effect free by contract (it runs in a
 * dry run); the job given to its taps is a dry-run job on a silent logger, so even a tap that
 * called job.step would only describe. For `status` and `doctor`.
 */
import type { RootEngine } from './engine.js';
import { oneLine } from './errors.js';
import { JobImpl, newRecord } from './job.js';
import { Journal, jobId } from './journal.js';
import type { Logger, RootContext } from './types.js';

export type FilterVerdict =
  /** The filters take it: it waits to be converted. */
  | { readonly take: true }
  /** A filter leaves it alone (a name filter, already a filesystem, …). */
  | { readonly take: false; readonly reason: string; readonly refused?: false }
  /** A filter refuses it (a name ZFS cannot hold, a mount inside it, …): a job would fail. */
  | { readonly take: false; readonly reason: string; readonly refused: true };

const silent: Logger = {
  debug: () => undefined,
  info: () => undefined,
  notice: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

export async function previewFilter(engine: RootEngine, name: string): Promise<FilterVerdict> {
  const context: RootContext = { ...engine.context, dryRun: true, log: silent };
  const record = newRecord(context, jobId(context.rootdir, name), name);
  // The journal is never written: a dry-run job saves nothing (and it points nowhere real anyway).
  const job = new JobImpl(context, record, new Journal('/nonexistent/zfs-dynamic-creator-preview'), new AbortController().signal);
  job.phase = 'filter';
  try {
    const skip = await engine.hooks.filter.promise(job);
    if (skip) return { take: false, reason: skip.skip };
    return { take: true };
  } catch (error) {
    return { take: false, reason: oneLine(error), refused: true };
  }
}
