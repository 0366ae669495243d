/**
 * Where there is no terminal (incron, cron, the daemon under systemd): no live line, only the
 * usual step lines, and for an activity that lasts (a quiet period on a directory still being
 * written, a grace period, a long copy, a wait for a work slot) an info line saying what the job
 * is still doing and since when: after FIRST_MS, then at doubling intervals up to MAX_EVERY_MS.
 * So a run that waits gives a sign of life within a minute, and an hour's wait of many
 * directories costs the journal eight lines each, not sixty.
 */
import type { JobObserver, JobProgress } from '../core/progress.js';
import { RateMeter, activityText } from './format.js';

export const FIRST_MS = 60_000;
export const MAX_EVERY_MS = 10 * 60_000;
const TICK_MS = 5000;

interface Tracked {
  activity: string;
  /** When the next line is due, and how many were said for this activity. */
  next: number;
  said: number;
  readonly meter: RateMeter;
}

/** What a job does, for telling when it starts doing something else. */
function activityOf(job: JobProgress): string {
  return job.waiting !== undefined ? `waiting\0${job.waiting.reason}` : `step\0${job.step ?? job.phase}`;
}

export class Heartbeat implements JobObserver {
  private readonly jobs = new Map<JobProgress, Tracked>();
  private ticker: NodeJS.Timeout | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  update(job: JobProgress): void {
    const now = this.now();
    const activity = activityOf(job);
    let tracked = this.jobs.get(job);
    if (!tracked) {
      tracked = { activity, next: now + FIRST_MS, said: 0, meter: new RateMeter() };
      this.jobs.set(job, tracked);
      this.ticker ??= setInterval(() => this.tick(), TICK_MS).unref();
    } else if (tracked.activity !== activity) {
      Object.assign(tracked, { activity, next: now + FIRST_MS, said: 0 });
      tracked.meter.reset();
    }
    if (job.bytes !== undefined) tracked.meter.add(now, job.bytes);
  }

  end(job: JobProgress): void {
    this.jobs.delete(job);
    if (this.jobs.size === 0 && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  /** Logs the lines that are due (called every few seconds). */
  tick(): void {
    const now = this.now();
    for (const [job, tracked] of this.jobs) {
      if (now < tracked.next) continue;
      tracked.said++;
      tracked.next = now + Math.min(FIRST_MS * 2 ** tracked.said, MAX_EVERY_MS);
      // "still waiting for a quiet period since 10:41:02 (1:00)…", "still at migrate/copy (1:00): 1,234 of 3,000 files…"
      job.log.info(`still ${job.waiting !== undefined ? '' : 'at '}${activityText(job, now, tracked.meter.rate(now))}`, {
        step: job.step ?? job.phase,
      });
    }
  }
}
