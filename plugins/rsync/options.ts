/** The rsync plugin's options, and the context its steps share. */
import * as z from 'zod';

/**
 * The parallel copy's default concurrency. Node's file calls run on libuv's thread pool (4
 * threads unless UV_THREADPOOL_SIZE is set before Node starts: an ES module entry cannot set it,
 * the loader has started the pool by then); a few more files in flight than threads keep it busy.
 */
export const COPY_CONCURRENCY = 16;

export const options = z
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
     * Copy the regular files by descriptor, copyConcurrency at once, before the rsync (which then
     * sends no data for them and does everything else); false: rsync alone.
     */
    parallelCopy: z.boolean().default(true),
    /** Files the parallel copy copies at once. */
    copyConcurrency: z.number().int().min(1).max(64).default(COPY_CONCURRENCY),
    /**
     * How the parallel copy moves data: "auto" by copy_file_range, which shares blocks where a
     * probe clone into the staging dataset shows the pool clones (once per root) and copies in
     * the kernel elsewhere; "off" never shares a block (read and write, no copy_file_range);
     * "always" copy_file_range without probing (tests, or a filesystem whose sharing the probe
     * cannot see).
     */
    blockCloning: z.enum(['auto', 'off', 'always']).default('auto'),
    /**
     * Stop the copy when rsync and its processes neither read, wrote nor ran for this long (a
     * file swapped for a FIFO blocks rsync's open for ever): the job is rolled back and reported.
     */
    stallSeconds: z.number().positive().default(300),
  })
  .strict();

export type Options = z.infer<typeof options>;

/** What every step of the plugin is given. */
export interface RsyncContext {
  readonly options: Options;
  /** The program's state directory (the manifests are kept below it). */
  readonly stateDir: string;
}
