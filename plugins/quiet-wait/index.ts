/**
 * quiet-wait: the wait phase. After an optional fixed delay (the original
 * --delay), the directory's whole tree is watched (inotify, through chokidar)
 * and the job goes on only once nothing under it has changed for `quietSeconds`
 * and no process (in any mount namespace) has its working directory, an open file or a mapping
 * on an inode of it (matched by device and inode, not by path). After `maxWaitSeconds` the job is deferred, never forced.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import chokidar from 'chokidar';
import { z } from 'zod';
import {
  TreeChangedError,
  definePlugin,
  describeHolders,
  holdersOf,
  openDir,
  treeDigest,
  type DirRef,
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
        if (!(await abortableSleep(opts.delaySeconds * 1000, job.signal))) return { defer: 'stopped while waiting' };
      }
      let lastChange = Date.now();
      let changes = 0;
      const watcher = opts.inotify
        ? chokidar.watch(job.path, { ignoreInitial: true, followSymlinks: false, persistent: true, alwaysStat: false })
        : undefined;
      watcher?.on('all', () => {
        lastChange = Date.now();
        changes++;
      });
      watcher?.on('error', () => {
        lastChange = Date.now();
      });
      let closeDir = async (): Promise<void> => undefined;
      try {
        if (watcher) await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
        // The tree is read through a descriptor of the directory the job identified (never by a
        // path its owner could redirect), and holders are matched by inode, in any mount namespace.
        const dir: DirRef = await openDir(job.path, job.record.identity);
        const look = async (): Promise<Awaited<ReturnType<typeof treeDigest>> | undefined> =>
          treeDigest(dir, { signal: job.signal }).catch((e: unknown) => (e instanceof TreeChangedError ? undefined : Promise.reject(e)));
        closeDir = () => dir.close();
        let seen = await look();
        let print = seen?.digest;
        let reported = '';
        for (;;) {
          const quietFor = Date.now() - lastChange;
          const left = opts.quietSeconds * 1000 - quietFor;
          if (left <= 0) {
            seen = await look();
            const now = seen?.digest;
            if (now === undefined || now !== print) {
              print = now;
              lastChange = Date.now();
              changes++;
              continue;
            }
            const holders = opts.checkOpenFiles && seen ? await holdersOf(seen.index) : [];
            if (holders.length === 0) {
              job.log.info(`quiet for ${opts.quietSeconds} s${changes ? ` after ${changes} change(s)` : ''}`, { step: 'wait' });
              return undefined;
            }
            const who = describeHolders(holders);
            if (who !== reported) job.log.info(`waiting: in use by ${who}`, { step: 'wait/open-files' });
            reported = who;
          }
          if (Date.now() >= deadline) {
            return { defer: `not quiet after ${opts.maxWaitSeconds} s${reported ? ` (in use by ${reported})` : ''}; will be tried again` };
          }
          const pause = Math.max(100, Math.min(left > 0 ? left : 1000, 1000, deadline - Date.now()));
          if (!(await abortableSleep(pause, job.signal))) return { defer: 'stopped while waiting' };
        }
      } finally {
        await watcher?.close();
        await closeDir();
      }
    });
  },
});
