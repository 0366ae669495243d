/**
 * rsync: the data side of the lifecycle.
 *
 * migrate  copy the original into the staging filesystem (rsync -aHAX)
 * swap     after the new filesystem is mounted in place: copy again what changed while the
 *          original was being moved aside (never overwriting a newer file), then verify
 * cleanup  wait until the original has stayed unchanged for a grace period, catch up late
 *          writes (warned about), verify again, and only then remove the original
 */
import { lstat, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { CommandError, RefusedError, TransientError, definePlugin, quoteName, retry, run, type Job } from '../../src/core/index.js';
import { describeHolders, holdersUnder, mountsBelow } from '../../src/util/proc.js';
import { treeFingerprint } from '../../src/util/tree.js';
import { verifyTree } from './verify.js';

const NAME = 'rsync';

const options = z
  .object({
    command: z.string().min(1).default('rsync'),
    /** rsync flags for every copy: archive, hard links, ACLs, xattrs, numeric owners. */
    flags: z.array(z.string().regex(/^-/, 'an rsync option')).default(['-aHAX', '--numeric-ids']),
    /** The original must stay unchanged this long before it is removed. */
    graceSeconds: z.number().min(0).default(30),
    /** Give up (keep the original, report an error) when it keeps changing this long. */
    maxGraceSeconds: z.number().min(0).default(600),
    /** Compare file contents too when verifying (reads everything twice). */
    verifyContent: z.boolean().default(false),
    /** Catch-up rounds in the swap before verification must pass. */
    catchUpRounds: z.number().int().min(1).max(50).default(5),
    /** Tries for a copy that fails in a way that may pass (rsync exit 24, vanished files). */
    copyAttempts: z.number().int().min(1).max(20).default(4),
  })
  .strict();

type Options = z.infer<typeof options>;

/** rsync exit codes: 23 partial transfer (an error), 24 vanished source files (a race, retried). */
const VANISHED = 24;

const NO_SPACE = /No space left on device|Disk quota exceeded|quota exceeded/i;

/**
 * rsync's last line only says "some files were not transferred (see previous errors)": the
 * message names the first real error instead, and says plainly when it is a full pool or quota.
 */
export function explainCopyError(error: CommandError): Error {
  const lines = error.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const errors = lines.filter((l) => l.startsWith('rsync: ') || l.startsWith('rsync error: '));
  const telling =
    lines.find((l) => NO_SPACE.test(l)) ?? lines.find((l) => l.startsWith('rsync: ') && !/Broken pipe|connection unexpectedly closed/.test(l));
  if (telling === undefined) return error;
  const cause = NO_SPACE.test(telling) ? (/quota/i.test(telling) ? 'the new filesystem is over its quota: ' : 'no space left: ') : '';
  const more = errors.filter((l) => l.startsWith('rsync: ')).length - 1;
  return new Error(`copy failed: ${cause}${telling}${more > 0 ? ` (and ${more} more error(s))` : ''} (rsync exit ${error.exitCode})`);
}

export default definePlugin<Options>({
  name: NAME,
  description: 'copies the data in, catches up, verifies, and removes the original only once verified',
  options,
  apply(hooks, { options: opts }) {
    /** Copies src/ into dst/. Returns the number of entries transferred. */
    const copy = async (job: Job, src: string, dst: string, extra: readonly string[] = []): Promise<number> => {
      const args = [...opts.flags, '--itemize-changes', ...extra, '--', `${src}/`, `${dst}/`];
      return retry(
        async () => {
          try {
            const { stdout } = await run(opts.command, args, { signal: job.signal });
            return stdout.split('\n').filter((l) => /^[<>ch.*]/.test(l) && !l.startsWith('.d')).length;
          } catch (error) {
            if (error instanceof CommandError && error.exitCode === VANISHED) throw new TransientError(error.message);
            if (error instanceof CommandError) throw explainCopyError(error);
            throw error;
          }
        },
        {
          attempts: opts.copyAttempts,
          firstDelayMs: 500,
          transient: (e) => e instanceof TransientError,
          onRetry: (e, n) => job.log.info(`copy: files vanished during the copy, copying again (try ${n + 1})`),
          signal: job.signal,
        },
      );
    };

    const verify = async (job: Job, original: string): Promise<string[]> => {
      const result = await verifyTree(original, job.path, { content: opts.verifyContent });
      job.log.debug(`verified ${result.entries} entries, ${result.bytes} bytes`);
      return result.differences;
    };

    hooks.prepare.tapPromise(NAME, async () => {
      await run(opts.command, ['--version']);
    });

    // Another filesystem mounted inside the directory would be copied into the dataset and,
    // worse, emptied with the original: such a directory is refused until it is unmounted.
    const refuseMountsBelow = async (path: string): Promise<void> => {
      const mounts = await mountsBelow(path);
      if (mounts.length > 0) {
        throw new RefusedError(`${quoteName(mounts[0]!)} is a filesystem mounted inside ${quoteName(path)}; unmount it first`);
      }
    };
    hooks.filter.tapPromise(NAME, async (job) => {
      await refuseMountsBelow(job.path);
      return undefined;
    });

    hooks.migrate.tapPromise(NAME, async (job) => {
      const staging = job.record.staging;
      if (!staging && !job.dryRun) throw new Error('no staging filesystem to copy into');
      await job.step('copy', `copy ${quoteName(job.path)} into ${quoteName(staging ?? '(staging)')}`, () => copy(job, job.path, staging!));
    });

    hooks.swap.tapPromise({ name: NAME, stage: 10 }, async (job) => {
      const aside = job.record.aside;
      if (job.dryRun || aside === undefined) {
        await job.step('catch-up', 'copy what changed during the swap, then verify', async () => undefined);
        return;
      }
      for (let round = 1; ; round++) {
        const print = await treeFingerprint(aside);
        // --update: a file already changed in the new filesystem is never overwritten by an older one.
        const n = await job.step('catch-up', `catch up changes from ${quoteName(aside)} (round ${round})`, () => copy(job, aside, job.path, ['--update']));
        const differences = await verify(job, aside);
        if (differences.length === 0) {
          job.log.info(`verified: every entry of the original is in ${job.record.filesystem ?? 'the new filesystem'}${n ? ` (${n} caught up)` : ''}`, { step: 'swap/verify' });
          return;
        }
        if (round >= opts.catchUpRounds) {
          // Still being written (a process kept a file open across the move): the cleanup waits
          // for it to stop, catches up and verifies before anything is removed.
          const holders = await holdersUnder(aside);
          const changing = (await treeFingerprint(aside)) !== print;
          if (holders.length > 0 || changing) {
            const who = holders.length > 0 ? `held by ${describeHolders(holders)}` : 'still changing';
            job.log.info(`the original is ${who}; the cleanup will wait for it, catch up and verify before removing anything`, { step: 'swap/verify' });
            return;
          }
          throw new Error(`verification failed after ${round} rounds (${differences.slice(0, 3).join('; ')}); the original is kept at ${quoteName(aside)}`);
        }
        job.log.info(`not yet equal (${differences[0]}); catching up again`, { step: 'swap/verify' });
        await sleep(Math.min(5000, 250 * 2 ** round));
      }
    });

    hooks.cleanup.tapPromise(NAME, async (job) => {
      const aside = job.record.aside;
      if (job.dryRun || aside === undefined) {
        await job.step('remove-original', `after ${opts.graceSeconds} s without changes, verify again and remove the original`, async () => undefined);
        return;
      }
      try {
        await lstat(aside);
      } catch {
        return; // already removed by an earlier, interrupted run
      }
      const remove = (note = ''): Promise<void | undefined> =>
        job.step('remove-original', `remove the verified original ${quoteName(aside)}${note}`, async () => {
          await refuseMountsBelow(aside);
          await rm(aside, { recursive: true, force: false, maxRetries: 3 });
        });
      // An earlier run verified it and began removing it, then died: what is left may be a
      // verified copy with holes. Late writes to what is left are still caught up, but without
      // directory times (the removal changed them) and without waiting for a quiet tree again.
      if (job.record.steps.some((s) => s.phase === 'cleanup' && s.step === 'remove-original')) {
        const n = (await job.step('catch-up', `catch up late writes from ${quoteName(aside)} before finishing its removal`, () => copy(job, aside, job.path, ['--update', '--omit-dir-times']))) ?? 0;
        if (n > 0) job.log.warn(`${n} late change(s) to the original were caught up after the swap`, { step: 'cleanup/catch-up' });
        // What is left must still be in the dataset (directory times aside, which verify does not compare).
        const differences = await verify(job, aside);
        if (differences.length > 0) {
          throw new Error(`verification of what is left failed (${differences.slice(0, 3).join('; ')}); the rest of the original is kept at ${quoteName(aside)}`);
        }
        await remove(' (finishing an interrupted removal)');
        return;
      }
      const deadline = Date.now() + opts.maxGraceSeconds * 1000;
      let caughtUp = 0;
      for (;;) {
        // Quiet for the whole grace period, and nobody local holds anything in it.
        let before = await treeFingerprint(aside);
        const quietSince = Date.now();
        while (Date.now() - quietSince < opts.graceSeconds * 1000) {
          if (job.signal.aborted) throw new Error('stopped during the grace period; the original is kept');
          await sleep(Math.min(1000, opts.graceSeconds * 1000));
          const now = await treeFingerprint(aside);
          if (now !== before) break;
          before = now;
        }
        const holders = await holdersUnder(aside);
        const quiet = (await treeFingerprint(aside)) === before && holders.length === 0;
        const n = (await job.step('catch-up', `catch up late writes from ${quoteName(aside)}`, () => copy(job, aside, job.path, ['--update']))) ?? 0;
        caughtUp += n;
        if (n > 0) job.log.warn(`${n} late change(s) to the original were caught up after the swap (old NFS handles or open files)`, { step: 'cleanup/catch-up' });
        if (quiet && n === 0) {
          const differences = await verify(job, aside);
          if (differences.length === 0) break;
          throw new Error(`verification failed (${differences.slice(0, 3).join('; ')}); the original is kept at ${quoteName(aside)}`);
        }
        if (holders.length > 0) job.log.info(`waiting: ${describeHolders(holders)} still hold files in the original`, { step: 'cleanup/wait' });
        if (Date.now() > deadline) {
          throw new Error(`the original at ${quoteName(aside)} kept changing for ${opts.maxGraceSeconds} s; it is kept, not removed`);
        }
      }
      await remove(caughtUp ? ` (${caughtUp} late change(s) caught up)` : '');
    });
  },
});
