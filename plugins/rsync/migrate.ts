/** The migrate phase: the copy (copy.ts), then its seal against the original (seal.ts). */
import { jobPaths, openDir, quoteName, type Identity, type Job } from '../../src/index.js';
import { copyIn, stageOptions } from './copy.js';
import type { RsyncContext } from './options.js';
import { describeCopyPath } from './parallel-copy.js';
import { seal } from './seal.js';

export async function migrate(ctx: RsyncContext, job: Job): Promise<void> {
  const { staging } = jobPaths(job.root.rootdir, job.name);
  if (job.dryRun) {
    const path = await describeCopyPath(job, stageOptions(ctx));
    await job.step('copy', `copy ${quoteName(job.path)} into ${quoteName(staging)}: ${path}`, async () => undefined);
    return;
  }
  const identity: Identity | undefined = job.record.identity;
  if (!identity) throw new Error('the original directory was never identified');
  const original = await openDir(job.path, identity);
  try {
    await job.step('copy', `copy ${quoteName(job.path)} into ${quoteName(staging)}`, () => copyIn(ctx, job, original, staging));
    await job.step('seal', `check the copy against the original and record it as the baseline`, () => seal(ctx, job, original, staging));
  } finally {
    await original.close();
  }
}
