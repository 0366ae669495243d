/**
 * Which progress display a process gets: live lines when stderr is a terminal (not the journal,
 * not TERM=dumb, not --quiet), else periodic "still …" lines for long waits and copies. The
 * modules are loaded only then, so that a run that never starts a job (incron's skips, status)
 * does not pay for them.
 */
import { journalIsStderr } from '../core/logger.js';
import type { JobObserver } from '../core/progress.js';

/** Whether stderr gets live progress lines. */
export function liveProgressWanted(options: { quiet?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return process.stderr.isTTY === true && !(options.quiet ?? false) && env.TERM !== 'dumb' && !journalIsStderr();
}

export async function progressObservers(options: { quiet?: boolean }): Promise<JobObserver[]> {
  if (liveProgressWanted(options)) {
    const { LiveLines } = await import('./live.js');
    return [new LiveLines().install()];
  }
  const { Heartbeat } = await import('./heartbeat.js');
  return [new Heartbeat()];
}
