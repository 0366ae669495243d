/**
 * quiet-wait: the wait phase. After an optional fixed delay (the original
 * --delay), the directories of the tree are watched (inotify, one watch per directory, not per
 * file) and the job goes on only once nothing under it has changed for `quietSeconds`
 * (0: no quiet period at all, only the open-files check) and no process (in any mount namespace) has its working directory, an open file or a mapping
 * on an inode of it (matched by device and inode, not by path), nor any mount namespace a mount of it. After `maxWaitSeconds` the job is deferred, never forced.
 * A wait holds a lane of its owner's (the queue's per-owner limit), never every lane: one user's
 * held directories cannot keep another's from starting. Its watches come out of the process's budget.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod';
import {
  DirectoryWatches,
  MAX_WATCHES,
  TreeChangedError,
  definePlugin,
  describeHolders,
  holdersOf,
  openDir,
  treeDigest,
  treeOf,
  type Defer,
  type DirRef,
  type EntryInfo,
  type Job,
} from '../../src/index.js';

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
        if (!(await job.waiting('the start delay', () => abortableSleep(opts.delaySeconds * 1000, job.signal)))) return { defer: 'stopped while waiting' };
      }
      if (opts.quietSeconds === 0 && !opts.checkOpenFiles) return undefined; // nothing to wait for
      // Waiting, for status and the progress line ("waiting for a quiet period since …").
      return job.waiting(opts.quietSeconds > 0 ? 'a quiet period' : 'its files to be closed', () => waitQuiet(job, deadline));
    });

    async function waitQuiet(job: Job, deadline: number): Promise<Defer | undefined> {
      let lastChange = Date.now();
      let changes = 0;
      const touched = (): void => {
        lastChange = Date.now();
        changes++;
      };
      // inotify on the tree's directories only (a change to any entry is an event on its
      // directory): O(directories) watches, however many files, and at most MAX_WATCHES; past
      // that, and for anything a watch misses, the digest comparison below still sees changes.
      const watches = opts.inotify && opts.quietSeconds > 0 ? new DirectoryWatches(job.path, touched) : undefined;
      let closeDir = async (): Promise<void> => undefined;
      try {
        // The tree is read through a descriptor of the directory the job identified (never by a
        // path its owner could redirect), and holders are matched by inode, in any mount namespace.
        const dir: DirRef = await openDir(job.path, job.record.identity);
        closeDir = () => dir.close();
        const look = async (): Promise<Awaited<ReturnType<typeof treeDigest>> | undefined> => {
          const dirs: string[] = [];
          let files = 0;
          const visit = (e: EntryInfo): void => {
            // One more than can be watched is enough to know that watches cannot cover the tree.
            if (e.type === 'dir') {
              if (dirs.length <= MAX_WATCHES) dirs.push(e.rel);
            } else if (e.type === 'file') files++;
          };
          const result = await treeDigest(dir, { signal: job.signal, visit }).catch((e: unknown) => (e instanceof TreeChangedError ? undefined : Promise.reject(e)));
          if (result) {
            watches?.update(dirs);
            // What the copy will have to do, as far as the tree now tells (for its ETA).
            job.progress({ totalFiles: files, totalBytes: result.bytes });
          }
          return result;
        };
        let seen = await look();
        let print = seen?.digest;
        let reported = '';
        for (;;) {
          const quietFor = Date.now() - lastChange;
          const left = opts.quietSeconds * 1000 - quietFor;
          if (left <= 0) {
            // quietSeconds 0 asks for no quiet period at all: only the open-files check remains.
            if (opts.quietSeconds > 0 || seen === undefined) seen = await look();
            const now = seen?.digest;
            if (now === undefined || (opts.quietSeconds > 0 && now !== print)) {
              print = now;
              touched();
              continue;
            }
            // A mount of it in any mount namespace (a container's volume) holds it too.
            const tree = opts.checkOpenFiles && seen ? await treeOf(dir.fd).catch(() => undefined) : undefined;
            const holders = opts.checkOpenFiles && seen ? await holdersOf(seen.index, { trees: tree ? [tree] : [] }) : [];
            if (holders.length === 0) {
              job.log.info(`quiet for ${opts.quietSeconds} s${changes ? ` after ${changes} change(s)` : ''}`, { step: 'wait' });
              return undefined;
            }
            const who = describeHolders(holders);
            if (who !== reported) job.log.info(`waiting: in use by ${who}`, { step: 'wait/open-files' });
            job.progress({ note: `in use by ${who}` });
            reported = who;
          }
          if (Date.now() >= deadline) {
            return { defer: `not quiet after ${opts.maxWaitSeconds} s${reported ? ` (in use by ${reported})` : ''}; will be tried again` };
          }
          if (left > 0) job.progress({ note: `quiet for ${Math.floor(quietFor / 1000)} of ${opts.quietSeconds} s${changes ? ` (${changes} change(s) seen)` : ''}` });
          const pause = Math.max(100, Math.min(left > 0 ? left : 1000, 1000, deadline - Date.now()));
          if (!(await abortableSleep(pause, job.signal))) return { defer: 'stopped while waiting' };
        }
      } finally {
        watches?.close();
        await closeDir();
      }
    }
  },
});
