/**
 * The sync tap (each sweep): runs converted before they said they were complete (the quiet
 * policy, or late markers) are looked at in their dataset, the same descriptor-based way, and
 * noted complete, aborted or stalled. A few lstat calls per such run and sweep.
 */
import { join } from 'node:path';
import { openDir, type RootContext, type Survey } from '../../src/index.js';
import { lookAtRun, type Tracker } from './track.js';

export function completionSync(t: Tracker): (root: RootContext, survey: Survey) => Promise<void> {
  return async (root, survey) => {
    for (const run of await root.runs.list()) {
      if (run.convertedAt === undefined || run.completion !== undefined) continue;
      const path = join(root.rootdir, run.name);
      const fs = survey.filesystems.get(run.name);
      if (!fs?.mounted || fs.mountpoint !== path) continue; // its dataset is not where the run is: nothing to look at
      const dir = await openDir(path).catch((error: unknown) => {
        root.log.debug(`cannot look at the run: ${error instanceof Error ? error.message : String(error)}`, { dir: run.name });
        return undefined;
      });
      if (!dir) continue;
      try {
        await lookAtRun(t, { runs: root.runs, log: root.log, name: run.name, path, dir }, true);
      } catch (error) {
        root.log.warn(`could not look at the run: ${error instanceof Error ? error.message : String(error)}`, { dir: run.name });
      } finally {
        await dir.close();
      }
    }
  };
}
