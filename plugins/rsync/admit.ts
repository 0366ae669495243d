/**
 * What the plugin refuses before any copy: an rsync that can be led out of the tree (prepare),
 * a directory with another filesystem mounted inside it (filter).
 */
import { RefusedError, holdingDir, mountsBelow, quoteName, type Job, type RootContext } from '../../src/index.js';
import { removeStaleProbes } from './clone.js';
import type { RsyncContext } from './options.js';
import { checkRsync, type RsyncSafety } from './version.js';

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

/** The root's preparation: the rsync is checked, stale block-cloning probes removed. */
export async function prepareRoot(ctx: RsyncContext, root: RootContext): Promise<void> {
  // An rsync that can be led out of the tree by a directory swapped for a symlink is refused.
  const rsync = await rsyncChecked(ctx.options.command);
  if (!rsync.ok) throw new RefusedError(rsync.detail);
  // A block-cloning probe a killed process left in the root-only holding directory.
  if (!root.dryRun) {
    for (const name of await removeStaleProbes(holdingDir(root.rootdir)))
      root.log.info(`removed ${quoteName(name)}, a block-cloning probe left by a process that is gone`);
  }
}

/**
 * Another filesystem mounted inside the directory would be copied into the dataset and, worse,
 * emptied with the original: such a directory is refused until it is unmounted.
 */
export async function refuseMountsBelow(job: Job): Promise<undefined> {
  const mounts = await mountsBelow(job.path);
  if (mounts.length > 0) {
    throw new RefusedError(`${quoteName(mounts[0]!)} is a filesystem mounted inside ${quoteName(job.path)}; unmount it first`);
  }
  return undefined;
}
