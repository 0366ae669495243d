/**
 * reconcile: one sweep of every root. Finishes or undoes interrupted jobs,
 * converts every plain directory that was missed, makes published state (exports)
 * match, and prints a summary. Safe beside incron and the daemon: every job
 * takes its directory's lock, and a busy directory is left to its holder.
 */
import type { App } from '../app.js';
import { RootEngine, type Outcome, type OutcomeKind } from '../core/index.js';
import { recoverRoot } from './recover.js';

export interface SweepSummary {
  readonly rootdir: string;
  readonly rootfs: string;
  readonly jobs: { name: string; outcome: OutcomeKind; message: string }[];
  readonly counts: Partial<Record<OutcomeKind, number>>;
  readonly error?: string;
}

/** Runs `worker` over `items`, at most `limit` at a time. */
export async function eachLimited<T>(items: readonly T[], limit: number, worker: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await worker(item);
    }
  });
  await Promise.all(lanes);
}

export async function sweepRoot(engine: RootEngine, concurrency: number, signal?: AbortSignal): Promise<SweepSummary> {
  const jobs: SweepSummary['jobs'] = [];
  const counts: Partial<Record<OutcomeKind, number>> = {};
  const note = (name: string, outcome: Outcome): void => {
    jobs.push({ name, outcome: outcome.kind, message: outcome.message });
    counts[outcome.kind] = (counts[outcome.kind] ?? 0) + 1;
  };
  const base = { rootdir: engine.context.rootdir, rootfs: engine.context.rootfs };
  try {
    for (const r of await recoverRoot(engine, signal)) note(r.name, r.outcome);
    const survey = await engine.survey();
    await eachLimited(RootEngine.candidates(survey), concurrency, async (name) => {
      if (signal?.aborted) return;
      note(name, await engine.handle(name, { signal }));
    });
    await engine.sync();
  } catch (error) {
    return { ...base, jobs, counts, error: (error as Error).message };
  }
  return { ...base, jobs, counts };
}

export async function reconcile(app: App, options: { json: boolean }): Promise<number> {
  const summaries: SweepSummary[] = [];
  for (const engine of app.engines) summaries.push(await sweepRoot(engine, app.config.watch.concurrency));
  if (options.json) {
    process.stdout.write(`${JSON.stringify(summaries, null, 2)}\n`);
  } else {
    for (const s of summaries) {
      const counts = Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(', ') || 'nothing to do';
      process.stdout.write(`${s.rootdir} (${s.rootfs}): ${counts}${s.error ? `; error: ${s.error}` : ''}\n`);
      for (const j of s.jobs) if (j.outcome !== 'skipped') process.stdout.write(`  ${j.outcome.padEnd(11)} ${JSON.stringify(j.name)}: ${j.message}\n`);
    }
  }
  return summaries.some((s) => s.error !== undefined || (s.counts.failed ?? 0) > 0) ? 1 : 0;
}
