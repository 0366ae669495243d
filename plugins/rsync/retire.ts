/**
 * The retirement of the original (cleanup, STAGE.retire): wait until the original has stayed
 * unchanged for the grace period with nobody holding anything in it (by inode or by a mount of
 * it, any mount namespace: the API's waitQuiet), catch up again; a pass that copies nothing and
 * finds no conflict is the verification; only then remove the original, by descriptor, never
 * following a symlink nor leaving its filesystem, and nothing the verification did not see.
 */
import { basename, dirname } from 'node:path';
import {
  AdvisedError,
  UnverifiedEntriesError,
  VerifiedSet,
  describeHolders,
  displayPath,
  openDir,
  quoteName,
  removeTree,
  waitQuiet,
  type DirRef,
  type Job,
} from '../../src/index.js';
import { noRoom } from './catch-up.js';
import { removeManifest, type Manifest } from './manifest.js';
import type { RsyncContext } from './options.js';
import { NO_PASS, pass } from './pass.js';
import { manifestOf, openAside, openBaseline, openLive, removalBegan } from './places.js';

/** Conflicts are final: both versions are kept, and the message says how to settle them. */
function conflictError(job: Job, aside: string, conflicts: readonly string[]): Error {
  return new AdvisedError(
    `${conflicts.length} entr${conflicts.length === 1 ? 'y was' : 'ies were'} changed both in the original and in the dataset (${conflicts.slice(0, 3).join('; ')}${conflicts.length > 3 ? '; …' : ''}); ` +
      `neither was overwritten, and the original is kept at ${quoteName(aside)}: for each, keep the version you want in ${quoteName(job.path)} and delete it from the kept original, then run 'zfs-dynamic-creator recover'`,
  );
}

/** Entries moved into the original during its removal: left where they are, the original kept. */
function unverifiedError(job: Job, aside: string, error: UnverifiedEntriesError): Error {
  const named = error.rels.slice(0, 3).map((rel) => quoteName(`${dirname(aside)}/${displayPath(rel)}`));
  for (const rel of error.rels)
    job.log.warn(`not removed (the verification never saw it): ${quoteName(`${dirname(aside)}/${displayPath(rel)}`)}`, {
      step: 'cleanup/remove-original',
    });
  return new AdvisedError(
    `${error.count} entr${error.count === 1 ? 'y' : 'ies'} appeared in the original during its removal that the verification never saw (${named.join(', ')}${error.count > 3 ? ', …' : ''}): ` +
      `left where ${error.count === 1 ? 'it is' : 'they are'}, and what is left of the original is kept at ${quoteName(aside)}; give each back to its owner, then run 'zfs-dynamic-creator recover'`,
  );
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
 * The grace period: until the original stayed unchanged for graceSeconds and nothing holds
 * anything in it (any process, any mount namespace, the NFS server's open state). Returns quiet:
 * false at the deadline, with who held it last.
 */
async function grace(ctx: RsyncContext, job: Job, original: DirRef, deadline: number): Promise<{ quiet: boolean; busy: string }> {
  const graceMs = ctx.options.graceSeconds * 1000;
  let reported = '';
  const r = await waitQuiet(original, {
    quietMs: graceMs,
    deadline,
    signal: job.signal,
    onUnsettled: (e) => job.log.debug(`the original changed while it was being looked at: ${e.message}`, { step: 'cleanup/wait' }),
    // Says (once per change of cast) who keeps the original busy.
    onHolders: (holders, changed) => {
      const who =
        holders.length > 0
          ? `${describeHolders(holders)} still hold files in the original`
          : changed
            ? 'the original is still changing (NFS clients or processes elsewhere)'
            : '';
      if (who !== '' && who !== reported) job.log.info(`waiting: ${who}`, { step: 'cleanup/wait' });
      reported = who;
    },
    // As the quiet period says it: how far into the grace period, of how long.
    onTick: (quietFor) => job.progress({ note: `quiet for ${Math.floor(quietFor / 1000)} of ${graceMs / 1000} s` }),
  });
  if (r.quiet) return { quiet: true, busy: '' };
  if (r.stopped) throw new Error('stopped during the grace period; the original is kept');
  return { quiet: false, busy: r.busy };
}

/**
 * Grace periods and catch-up passes until one verifies the original (returns every entry it saw
 * and how many late changes were caught up), finds conflicts (thrown), or the deadline passes.
 */
async function verify(
  ctx: RsyncContext,
  job: Job,
  found: { ref: DirRef; path: string },
  live: DirRef,
  manifest: Manifest | undefined,
): Promise<{ verified: VerifiedSet; caughtUp: number }> {
  const { ref: original, path: aside } = found;
  // An earlier run verified the original and began removing it, then died: what is left
  // needs no grace period again, only a pass proving it is all represented.
  const resuming = removalBegan(job);
  const deadline = Date.now() + ctx.options.maxGraceSeconds * 1000;
  let caughtUp = 0;
  for (;;) {
    // Waiting, not work: the grace period holds no work slot (other jobs copy meanwhile).
    const { quiet, busy } = resuming
      ? { quiet: true, busy: '' }
      : await job.waiting('grace period', () => grace(ctx, job, original, deadline));
    const seen = new VerifiedSet(original.dev);
    const r = await job.step(
      'catch-up',
      `catch up late changes from ${quoteName(aside)}`,
      () => pass(ctx, job, original, live, manifest, seen).catch((e: unknown) => Promise.reject(noRoom(job, aside, e))),
      { dryRun: NO_PASS },
    );
    caughtUp += r.copied;
    if (r.copied > 0)
      job.log.warn(`${r.copied} late change(s) to the original were caught up after the swap (old NFS handles or open files)`, {
        step: 'cleanup/catch-up',
      });
    if (quiet && r.copied === 0 && !r.changing) {
      if (r.conflicts.length === 0) return { verified: seen, caughtUp };
      // Every one named in the log (and the first in the job's error, which status shows).
      const shown = r.conflicts.slice(0, 1000);
      for (const c of shown) job.log.warn(`conflict: ${c}`, { step: 'cleanup/conflict' });
      if (r.conflicts.length > shown.length)
        job.log.warn(`… and ${r.conflicts.length - shown.length} more conflict(s)`, { step: 'cleanup/conflict' });
      throw conflictError(job, aside, r.conflicts);
    }
    if (Date.now() > deadline) {
      const why = busy === '' ? 'kept changing' : `was still in use (${busy})`;
      throw new Error(`the original at ${quoteName(aside)} ${why} for ${ctx.options.maxGraceSeconds} s; it is kept, not removed`);
    }
  }
}

/** Removes the verified original, by descriptor, nothing the verification did not see. */
async function remove(job: Job, original: DirRef, aside: string, verified: VerifiedSet): Promise<void> {
  const holding = await openDir(dirname(aside));
  try {
    await removeTree(holding, basename(aside), original.identity, { signal: job.signal, verified });
  } catch (error) {
    if (error instanceof UnverifiedEntriesError) throw unverifiedError(job, aside, error);
    throw error;
  } finally {
    await holding.close();
  }
}

/** The cleanup's retirement of one job's original. */
export async function retire(ctx: RsyncContext, job: Job): Promise<void> {
  if (job.dryRun) {
    await job.step(
      'remove-original',
      `after ${ctx.options.graceSeconds} s without changes, verify again and remove the original`,
      async () => undefined,
    );
    return;
  }
  const found = await openAside(job);
  if (!found) {
    await removeManifest(manifestOf(ctx, job));
    return;
  }
  const live = await openLive(job);
  try {
    const manifest = await openBaseline(ctx, job, found.path);
    const { verified, caughtUp } = await verify(ctx, job, found, live, manifest);
    // What the verified copy holds, for the conversion's history (the filesystem plugin records it).
    if (manifest !== undefined) await job.setJournalled({ copied: await copiedOf(manifest) });
    const late = caughtUp ? ` (${caughtUp} late change(s) caught up)` : '';
    await job.step('remove-original', `remove the verified original ${quoteName(found.path)}${late}`, () =>
      remove(job, found.ref, found.path, verified),
    );
    await removeManifest(manifestOf(ctx, job));
  } finally {
    await Promise.all([found.ref.close(), live.close()]);
  }
}
