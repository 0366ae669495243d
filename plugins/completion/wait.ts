/**
 * The wait tap (STAGE.completion, before quiet-wait's): under the complete policy a run that is
 * not complete waits (the job ends as `waiting` and the directory is looked at again after
 * `recheckSeconds`, holding no slot, no lane and no process); a complete or aborted run goes on
 * to quiet-wait's quiet window; a stalled one goes on or waits, as `onStall` says. Under the
 * quiet policy it only notes a run that is already complete or aborted.
 */
import { openDir, type Defer, type Job } from '../../src/index.js';
import { lookAtRun, type Tracker } from './track.js';

export function completionWait(t: Tracker): (job: Job) => Promise<Defer | undefined> {
  return async (job) => {
    // The directory the job identified, by descriptor: a folder renamed or replaced meanwhile is refused here.
    const dir = await openDir(job.path, job.record.identity);
    try {
      const complete = t.opts.policy === 'complete';
      const found = await lookAtRun(t, { runs: job.root.runs, log: job.log, name: job.name, path: job.path, dir }, complete);
      if (!complete || found.kind === 'complete' || found.kind === 'aborted') return undefined;
      if (found.kind === 'stalled' && t.opts.onStall === 'convert') return undefined;
      return { defer: found.note, waiting: true, recheckSeconds: t.opts.recheckSeconds };
    } finally {
      await dir.close();
    }
  };
}
