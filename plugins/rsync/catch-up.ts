/**
 * The catch-up (swap, STAGE.catchUp, after the commit): copy, by descriptor, the entries whose
 * original changed since the baseline while the dataset did not (threeway.ts), a few rounds;
 * conflicts are kept. A round that copies nothing, finds no conflict and sees no change is the
 * verification; otherwise the cleanup (retire.ts) takes over.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { constants as osConstants } from 'node:os';
import { AdvisedError, isErrno, oneLine, quoteName, type DirRef, type Job } from '../../src/index.js';
import type { Manifest } from './manifest.js';
import type { RsyncContext } from './options.js';
import { NO_PASS, pass, type PassResult } from './pass.js';
import { openAside, openBaseline, openLive } from './places.js';

/**
 * A late change to the original that does not fit the live dataset (its limits are set at the
 * commit) is not caught up: the verification cannot pass, the original is kept, and the message
 * says why and what to do. Any other error is given back as it was.
 */
export function noRoom(job: Job, aside: string, error: unknown): unknown {
  // Node names EDQUOT "Unknown system error -122" (no code): known by its number.
  const errno = (error as NodeJS.ErrnoException | undefined)?.errno;
  if (!isErrno(error, 'EDQUOT') && !isErrno(error, 'ENOSPC') && errno !== -osConstants.errno.EDQUOT && errno !== -osConstants.errno.ENOSPC)
    return error;
  const fs = job.record.filesystem ?? `${job.root.rootfs}/${job.name}`;
  return new AdvisedError(
    `a late change to the original does not fit in ${fs} (${(error as Error).message.split('\n')[0]}): over its quota or refquota (set at the commit), or the pool is full; ` +
      `the original is kept at ${quoteName(aside)}; raise the quota (zfs get quota,refquota ${fs}) or make room, then run 'zfs-dynamic-creator recover'`,
  );
}

/** One round: its result, or undefined (and a warning) when a late change does not fit. */
async function round(
  ctx: RsyncContext,
  job: Job,
  n: number,
  aside: { ref: DirRef; path: string },
  live: DirRef,
  manifest: Manifest | undefined,
): Promise<PassResult | undefined> {
  let full: unknown;
  const r = await job
    .step('catch-up', `catch up what the original changed (round ${n})`, () => pass(ctx, job, aside.ref, live, manifest), {
      dryRun: NO_PASS,
    })
    .catch((e: unknown) => {
      if ((full = noRoom(job, aside.path, e)) === e) throw e;
      return undefined;
    });
  // Published all the same (users see their dataset); the cleanup keeps the original and says why.
  if (r === undefined) job.log.warn(oneLine(full), { step: 'swap/catch-up' });
  return r;
}

/** The swap's catch-up of one job. */
export async function catchUp(ctx: RsyncContext, job: Job): Promise<void> {
  if (job.dryRun) {
    await job.step('catch-up', 'copy what the original changed during the swap, then verify', async () => undefined);
    return;
  }
  const found = await openAside(job);
  if (!found) return; // already removed by an earlier, interrupted run
  const live = await openLive(job);
  try {
    const manifest = await openBaseline(ctx, job, found.path);
    for (let n = 1; ; n++) {
      const r = await round(ctx, job, n, found, live, manifest);
      if (r === undefined) return;
      if (r.copied === 0 && r.conflicts.length === 0 && !r.changing) {
        job.log.info(
          `verified: all ${r.entries} entries of the original are in ${job.record.filesystem ?? 'the new filesystem'} (or were changed there since)`,
          { step: 'swap/verify' },
        );
        return;
      }
      if (r.copied > 0)
        job.log.info(`${r.copied} entr${r.copied === 1 ? 'y' : 'ies'} (${r.bytes} bytes) caught up`, { step: 'swap/catch-up' });
      if (n >= ctx.options.catchUpRounds || r.conflicts.length > 0) {
        job.log.info('the cleanup waits for the original to stay unchanged, catches up and verifies before removing anything', {
          step: 'swap/verify',
        });
        return;
      }
      await job.waiting('a pause between catch-up passes', () => sleep(Math.min(5000, 250 * 2 ** n)));
    }
  } finally {
    await Promise.all([found.ref.close(), live.close()]);
  }
}
