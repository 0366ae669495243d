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
 *
 * One module a step, each given the RsyncContext (options.ts): migrate.ts (copy.ts, seal.ts),
 * catch-up.ts, retire.ts, pass.ts and copies.ts (a catch-up pass), admit.ts (prepare, filter),
 * places.ts (the manifest, the original, the live dataset).
 */
import { STAGE, definePlugin } from '../../src/index.js';
import { prepareRoot, refuseMountsBelow } from './admit.js';
import { catchUp } from './catch-up.js';
import { rsyncDoctor } from './doctor.js';
import { removeManifest } from './manifest.js';
import { migrate } from './migrate.js';
import { options, type Options, type RsyncContext } from './options.js';
import { manifestOf } from './places.js';
import { retire } from './retire.js';

const NAME = 'rsync';

export default definePlugin<Options>({
  name: NAME,
  description: "copies the data in, catches up only the original's own changes, verifies, and removes the original only once verified",
  options,
  apply(hooks, { options: opts, stateDir }) {
    const ctx: RsyncContext = { options: opts, stateDir };
    hooks.doctor.tapPromise(NAME, (checks, doctor) => rsyncDoctor(checks, doctor, opts));
    hooks.prepare.tapPromise(NAME, (root) => prepareRoot(ctx, root));
    hooks.filter.tapPromise(NAME, (job) => refuseMountsBelow(job));
    hooks.migrate.tapPromise(NAME, (job) => migrate(ctx, job));
    hooks.swap.tapPromise({ name: NAME, stage: STAGE.catchUp }, (job) => catchUp(ctx, job));
    hooks.cleanup.tapPromise({ name: NAME, stage: STAGE.retire }, (job) => retire(ctx, job));
    hooks.rollback.tapPromise(NAME, (job) => removeManifest(manifestOf(ctx, job)));
  },
});
