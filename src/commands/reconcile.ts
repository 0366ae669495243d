/**
 * reconcile: one sweep of every root. Finishes or undoes interrupted jobs,
 * converts every plain directory that was missed, makes published state (exports)
 * match, and prints a summary. Safe beside incron and the daemon: every job
 * takes its directory's lock, and a busy directory is left to its holder.
 *
 * The state of a root is learnt in a constant number of external calls (the
 * survey: one directory listing, one `zfs list -d 1`), whatever the number of
 * filesystems and directories; only directories that are converted cost calls
 * of their own. On SIGTERM or SIGINT no new job starts, waits give up, copies
 * before the commit roll back, and jobs past it are left for recovery.
 */
import { setMaxListeners } from 'node:events';
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import type { App } from '../app.js';
import {
  BusyError,
  ConfigError,
  RootEngine,
  RootGoneError,
  Slots,
  oneLine,
  writeStdout,
  type Outcome,
  type OutcomeKind,
  type Survey,
} from '../core/index.js';
import { acquireLock, type Lock } from '../core/lock.js';
import { stopOnSignals } from '../core/stop.js';
import { JobQueue } from '../daemon/queue.js';
import { pruneRuns, runItem, sweepItems } from '../daemon/sweeper.js';
import { jsonText } from './envelope.js';

export interface SweepSummary {
  readonly rootdir: string;
  readonly rootfs: string;
  /** remembered: a refusal said by an earlier run (not news). */
  readonly jobs: { name: string; outcome: OutcomeKind; message: string; remembered?: true }[];
  readonly counts: Partial<Record<OutcomeKind, number>>;
  readonly error?: string;
  /** The root is gone (its jobs wait): the line that says so, and whether this sweep is the first to meet it. */
  readonly gone?: { readonly message: string; readonly first: boolean };
}

/**
 * How an outcome kind reads in a summary: in a dry run nothing was converted or rolled back,
 * so it says what would have been ("would convert", "would roll back", "would recover").
 */
export function outcomeLabel(kind: OutcomeKind, dryRun: boolean): string {
  if (!dryRun) return kind;
  switch (kind) {
    case 'converted':
      return 'would convert';
    case 'recovered':
      return 'would recover';
    case 'rolled-back':
      return 'would roll back';
    default:
      return kind;
  }
}

/** Outcomes after which the survey no longer describes the root. */
const CHANGES: ReadonlySet<OutcomeKind> = new Set(['converted', 'recovered', 'rolled-back', 'failed', 'refused']);

/**
 * One sweep of one root. Every candidate and every interrupted job runs as a job (up to
 * `maxJobs` at once, `maxJobsPerOwner` of one owner's, owners in turn), and only `concurrency`
 * of them work at a time: waiting (quiet and grace periods) holds no work slot. Interrupted jobs
 * are finished beside the new conversions, not before them; one rolled back is converted after.
 */
export async function sweepRoot(engine: RootEngine, limits: SweepLimits, signal?: AbortSignal): Promise<SweepSummary> {
  const slots = new Slots(limits.concurrency, limits.concurrencyPerOwner ?? limits.concurrency);
  const stop = signal ?? new AbortController().signal;
  const jobs: SweepSummary['jobs'] = [];
  const counts: Partial<Record<OutcomeKind, number>> = {};
  let changed = false;
  const note = (name: string, outcome: Outcome): void => {
    jobs.push({
      name,
      outcome: outcome.kind,
      message: outcome.message,
      ...(outcome.kind === 'refused' && outcome.remembered ? { remembered: true as const } : {}),
    });
    counts[outcome.kind] = (counts[outcome.kind] ?? 0) + 1;
    if (CHANGES.has(outcome.kind)) changed = true;
  };
  const base = { rootdir: engine.context.rootdir, rootfs: engine.context.rootfs };
  try {
    const surveyed = Date.now();
    const survey: Survey = await engine.survey();
    // Refusals of directories that are gone (removed, renamed, converted) are forgotten, and runs gone or long over.
    if (!engine.context.dryRun) {
      await engine.refusals.prune(survey.directories);
      await pruneRuns(engine.context.runs, survey, surveyed);
    }
    const queue = new JobQueue({
      maxJobs: () => limits.maxJobs,
      maxJobsPerOwner: () => limits.maxJobsPerOwner ?? limits.maxJobs,
      signal: stop,
      run: async (item) => {
        const { outcome, after } = await runItem(engine, item, { signal: stop, slots });
        note(item.name, outcome);
        return after;
      },
    });
    for (const item of await sweepItems(engine, survey)) queue.add(item.rootdir, item.name, item);
    await queue.drain();
    if (!stop.aborted) await engine.sync(changed ? await engine.survey() : survey);
  } catch (error) {
    if (error instanceof RootGoneError) {
      const { line, newly } = await engine.goneReport(error);
      (newly ? engine.log.error : engine.log.info).call(engine.log, line, { step: 'sweep' });
      return { ...base, jobs, counts, gone: { message: line, first: newly } };
    }
    return { ...base, jobs, counts, error: (error as Error).message };
  }
  return { ...base, jobs, counts };
}

/** What bounds a sweep's jobs (the config's `watch` section). */
export interface SweepLimits {
  readonly concurrency: number;
  readonly maxJobs: number;
  readonly concurrencyPerOwner?: number;
  readonly maxJobsPerOwner?: number;
}

/**
 * The engines to sweep: every root, or only the configured root `root` names
 * (the same directory, trailing slashes and symbolic links aside).
 */
export function enginesFor(app: App, root: string | undefined): readonly RootEngine[] {
  if (root === undefined) return app.engines;
  const wanted = resolve(root).replace(/\/+$/, '') || '/';
  const canonical = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const engine =
    app.engines.find((e) => e.context.rootdir === wanted) ?? app.engines.find((e) => canonical(e.context.rootdir) === canonical(wanted));
  if (!engine) {
    throw new ConfigError(
      `--root ${JSON.stringify(root)} is not a configured root (${app.engines.map((e) => e.context.rootdir).join(', ')})`,
    );
  }
  return [engine];
}

/** How long a sweep waits for the one running before it: longer than any sweep should take. */
const SWEEP_WAIT_MS = 60 * 60 * 1000;

/**
 * Sweeps of one root run one at a time (a lock per root in the stateDir), so that
 * incron, which starts `reconcile --root` for every event, never has sweeps racing
 * each other over the same jobs. `wait`: wait for the running sweep, then sweep.
 * `coalesce` (for incron): when a sweep is already waiting to start, return
 * 'queued' at once — that sweep starts after this call began, so it sees
 * everything this one would have; else wait as `wait` does.
 */
export async function lockSweep(engine: RootEngine, app: App, mode: 'wait' | 'coalesce'): Promise<Lock | 'queued'> {
  const id = `sweep-${createHash('sha256').update(engine.context.rootdir).digest('hex').slice(0, 20)}`;
  let queued: Lock | undefined;
  try {
    if (mode === 'coalesce') {
      try {
        queued = await acquireLock(engine.context.stateDir, `${id}.queued`);
      } catch (error) {
        if (error instanceof BusyError) return 'queued';
        throw error;
      }
    }
    return await acquireLock(engine.context.stateDir, `${id}.running`, { waitMs: SWEEP_WAIT_MS });
  } catch (error) {
    if (error instanceof BusyError)
      throw new BusyError(`another sweep of ${engine.context.rootdir} has run for over ${SWEEP_WAIT_MS / 60000} minutes`);
    throw error;
  } finally {
    await queued?.release();
  }
}

/** The metrics' last-sweep timestamp of a root (when metrics are configured); never fatal. */
async function sweptGauge(app: App, rootdir: string): Promise<void> {
  const textfile = app.config.metrics?.textfile;
  if (textfile === undefined) return;
  const { MetricsTextfile } = await import('../metrics/textfile.js');
  await new MetricsTextfile(textfile, app.config.stateDir)
    .swept(rootdir)
    .catch((error: unknown) => app.engines[0]?.log.warn(oneLine(error)));
}

/**
 * --summary (cron, mail): one line per job that is news, `<outcome> "<rootdir>/<name>": <message>`,
 * and one per root that could not be swept; nothing at all when nothing happened (so no mail).
 * Skipped names and refusals said by an earlier run are not news.
 */
export function summaryLines(summaries: readonly SweepSummary[], dryRun: boolean): string[] {
  const lines: string[] = [];
  for (const s of summaries) {
    if (s.gone) {
      if (s.gone.first) lines.push(`${'gone'.padEnd(11)} ${s.gone.message}`);
      continue;
    }
    if (s.error !== undefined) lines.push(`${'failed'.padEnd(11)} ${JSON.stringify(s.rootdir)}: ${s.error}`);
    for (const j of s.jobs) {
      if (j.outcome === 'skipped' || j.remembered) continue;
      lines.push(`${outcomeLabel(j.outcome, dryRun).padEnd(11)} ${JSON.stringify(`${s.rootdir}/${j.name}`)}: ${j.message}`);
    }
  }
  return lines;
}

export async function reconcile(app: App, options: { json: boolean; summary?: boolean; root?: string }): Promise<number> {
  const engines = enginesFor(app, options.root);
  const stop = stopOnSignals({
    say: (signal) => engines[0]?.log.notice(`${signal}: stopping; no new job starts, running jobs roll back or are left for recovery`),
    again: 'ignore',
  });
  // Every job in flight (up to watch.maxJobs) and its waits listen on this one signal: no warning at 11.
  setMaxListeners(0, stop.signal);
  const summaries: SweepSummary[] = [];
  try {
    for (const engine of engines) {
      if (stop.signal.aborted) break;
      let lock: Lock | 'queued' | undefined;
      try {
        // A dry run changes nothing, the stateDir included.
        if (!engine.context.dryRun) lock = await lockSweep(engine, app, options.root !== undefined ? 'coalesce' : 'wait');
      } catch (error) {
        summaries.push({
          rootdir: engine.context.rootdir,
          rootfs: engine.context.rootfs,
          jobs: [],
          counts: {},
          error: (error as Error).message,
        });
        continue;
      }
      if (lock === 'queued') {
        engine.log.debug('a sweep of this root is already queued; it will see what this one would have');
        summaries.push({ rootdir: engine.context.rootdir, rootfs: engine.context.rootfs, jobs: [], counts: {} });
        continue;
      }
      try {
        const summary = await sweepRoot(engine, app.config.watch, stop.signal);
        summaries.push(summary);
        if (summary.error === undefined && !engine.context.dryRun) await sweptGauge(app, engine.context.rootdir);
      } finally {
        await lock?.release();
      }
    }
  } finally {
    stop.off();
  }
  const dryRun = engines.some((e) => e.context.dryRun);
  if (options.json) {
    writeStdout(jsonText('reconcile', { config: app.config.source, roots: summaries, stopped: stop.signal.aborted }));
  } else if (options.summary) {
    for (const line of summaryLines(summaries, dryRun)) writeStdout(`${line}\n`);
    if (stop.signal.aborted) writeStdout('stopped before the end; the next reconcile goes on\n');
  } else {
    for (const s of summaries) {
      const counts =
        Object.entries(s.counts)
          .map(([k, v]) => `${v} ${outcomeLabel(k as OutcomeKind, dryRun)}`)
          .join(', ') || 'nothing to do';
      if (s.gone) writeStdout(`${s.gone.message}\n`);
      else writeStdout(`${s.rootdir} (${s.rootfs}): ${counts}${s.error ? `; error: ${s.error}` : ''}\n`);
      for (const j of s.jobs)
        if (j.outcome !== 'skipped')
          writeStdout(`  ${outcomeLabel(j.outcome, dryRun).padEnd(11)} ${JSON.stringify(j.name)}: ${j.message}\n`);
    }
    if (stop.signal.aborted) writeStdout('stopped before the end; the next reconcile goes on\n');
  }
  // A gone root fails the first sweep that meets it, not every one after (see recover).
  return summaries.some((s) => s.error !== undefined || s.gone?.first === true || (s.counts.failed ?? 0) > 0) ? 1 : 0;
}
