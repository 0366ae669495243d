/**
 * quiet-wait: the wait phase. After an optional fixed delay (the original
 * --delay), the directories of the tree are watched (inotify, one watch per directory, not per
 * file) and the job goes on only once nothing under it has changed for `quietSeconds`
 * (0: no quiet period at all, only the open-files check) and no process (in any mount namespace) has its working directory, an open file or a mapping
 * on an inode of it (matched by device and inode, not by path), nor any mount namespace a mount of it. After `maxWaitSeconds` the job is deferred, never forced.
 * A wait holds a lane of its owner's (the queue's per-owner limit), never every lane: one user's
 * held directories cannot keep another's from starting. Its watches come out of the process's budget.
 * The wait itself is the API's waitQuiet (src/util/quiet.ts), shared with the rsync plugin's grace period.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod';
import { definePlugin, describeHolders, openDir, waitQuiet, type Defer, type Job } from '../../src/index.js';

const NAME = 'quiet-wait';

const options = z
  .object({
    /** A fixed delay first (the original --delay). */
    delaySeconds: z.number().min(0).default(0),
    /** The tree must be free of changes this long. */
    quietSeconds: z.number().min(0).default(10),
    /** Defer the job when the tree is not quiet after this long. */
    maxWaitSeconds: z.number().min(0).default(3600),
    /** Wait while local processes hold files under the directory (what fuser would show). */
    checkOpenFiles: z.boolean().default(true),
    /** Watch with inotify; when false, only compare tree fingerprints. */
    inotify: z.boolean().default(true),
  })
  .strict();

type Options = z.infer<typeof options>;

async function abortableSleep(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

export default definePlugin<Options>({
  name: NAME,
  description: 'waits until the directory tree is quiet and nobody holds files in it',
  options,
  apply(hooks, { options: opts }) {
    hooks.wait.tapPromise(NAME, async (job: Job) => {
      const started = Date.now();
      const deadline = started + Math.max(opts.maxWaitSeconds, opts.delaySeconds) * 1000;
      if (opts.delaySeconds > 0) {
        job.log.info(`waiting ${opts.delaySeconds} s before starting`, { step: 'wait/delay' });
        if (!(await job.waiting('the start delay', () => abortableSleep(opts.delaySeconds * 1000, job.signal))))
          return { defer: 'stopped while waiting' };
      }
      if (opts.quietSeconds === 0 && !opts.checkOpenFiles) return undefined; // nothing to wait for
      // Waiting, for status and the progress line ("waiting for a quiet period since …").
      return job.waiting(opts.quietSeconds > 0 ? 'a quiet period' : 'its files to be closed', () => waitQuietly(job, deadline));
    });

    async function waitQuietly(job: Job, deadline: number): Promise<Defer | undefined> {
      let reported = '';
      // The tree is read through a descriptor of the directory the job identified (never by a
      // path its owner could redirect), and holders are matched by inode, in any mount namespace.
      const dir = await openDir(job.path, job.record.identity);
      try {
        const quietMs = opts.quietSeconds * 1000;
        const seen = (changes: number): string => (changes ? ` (${changes} change(s) seen)` : '');
        const r = await waitQuiet(dir, {
          quietMs,
          deadline,
          signal: job.signal,
          inotify: opts.inotify && opts.quietSeconds > 0,
          holders: opts.checkOpenFiles,
          // What the copy will have to do, as far as the tree now tells (for its ETA).
          onLook: (look) => job.progress({ totalFiles: look.files, totalBytes: look.bytes }),
          onHolders: (holders, changed) => {
            if (changed || holders.length === 0) return;
            const who = describeHolders(holders);
            if (who !== reported) job.log.info(`waiting: in use by ${who}`, { step: 'wait/open-files' });
            job.progress({ note: `in use by ${who}` });
            reported = who;
          },
          onTick: (quietFor, changes) => {
            if (quietFor < quietMs)
              job.progress({ note: `quiet for ${Math.floor(quietFor / 1000)} of ${opts.quietSeconds} s${seen(changes)}` });
          },
        });
        if (r.quiet) {
          job.log.info(`quiet for ${opts.quietSeconds} s${r.changes ? ` after ${r.changes} change(s)` : ''}`, { step: 'wait' });
          return undefined;
        }
        if (r.stopped) return { defer: 'stopped while waiting' };
        return { defer: `not quiet after ${opts.maxWaitSeconds} s${reported ? ` (in use by ${reported})` : ''}; will be tried again` };
      } finally {
        await dir.close();
      }
    }
  },
});
