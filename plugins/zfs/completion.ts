/**
 * After the conversion: what the zfs plugin does once a run completes (or aborts), for the options
 * snapshotOnComplete and readonlyAfterSeconds.
 *
 * snapshot  <dataset>@<template with {state} and {time}>, {time} the moment the run completed
 *           (its completedAt, e.g. complete-20261207T101500Z): taken when the run hook hears the
 *           run is complete and converted, or, for a run complete before its conversion, at the
 *           end of that conversion (finish); a sweep takes one that was missed (a crash, a busy
 *           dataset), still named after completedAt. Recorded in PROP_COMPLETION; one already
 *           there is kept.
 * readonly  readonly=on once readonlyAfterSeconds have passed since the completion (for a run no
 *           policy judges complete, its policy none or a bare quiet: since the conversion), set by the
 *           sweeps (sync), once, on a dataset whose conversion is finished (state live); recorded
 *           in PROP_COMPLETION.readonlySince, and never set again (a site that sets readonly=off
 *           by hand keeps it off).
 *
 * The dataset is always the run's (the run record's dataset, or the job's filesystem).
 */
import { FINAL_RUN_STATES, oneLine, type Job, type Logger, type RootContext, type RunEvent, type RunRecord } from '../../src/index.js';
import type { Options } from './options.js';
import { PROP_COMPLETION, PROP_STATE, type Zfs } from './zfs.js';

/** snapshotOnComplete: true */
export const COMPLETION_TEMPLATE = '{state}-{time}';

/** 2026-12-07T10:15:00.000Z as 20261207T101500Z: ISO 8601's basic format, UTC, to the second. */
export function compactTime(iso: string): string {
  const d = new Date(iso);
  if (!Number.isFinite(d.getTime())) throw new Error(`${JSON.stringify(iso)} is not a time`);
  return d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
}

/** The snapshot's name (after "@") for a run that became `state` at `completedAt`. */
export function completionSnapshotName(template: string, state: 'complete' | 'aborted', completedAt: string): string {
  return template.replaceAll('{state}', state).replaceAll('{time}', compactTime(completedAt));
}

/** A run that completed or aborted, and when. */
type Completed = RunRecord & { readonly completion: 'complete' | 'aborted'; readonly completedAt: string };

const completed = (r: RunRecord | undefined): r is Completed =>
  r !== undefined && r.completion !== undefined && r.completedAt !== undefined && FINAL_RUN_STATES.includes(r.completion);

/**
 * Whether some policy will say the run is complete: not without one (no completion plugin), nor
 * with `quiet` alone (no preset or rules: "quiet (nanopore)" tracks completion). Without, readonly
 * counts from the conversion.
 */
const judgesCompletion = (r: RunRecord): boolean => r.policy !== undefined && r.policy !== 'quiet';

/** When readonlyAfterSeconds starts to count for `r`: its completion, or its conversion when no policy judges it; undefined: not yet. */
export function readonlyFrom(r: RunRecord): string | undefined {
  return completed(r) ? r.completedAt : judgesCompletion(r) ? undefined : r.convertedAt;
}

export class Completion {
  constructor(
    private readonly opts: Pick<Options, 'snapshotOnComplete' | 'readonlyAfterSeconds'>,
    private readonly zfs: Zfs,
    private readonly log: Logger,
  ) {}

  get wanted(): boolean {
    return this.opts.snapshotOnComplete !== undefined || this.opts.readonlyAfterSeconds !== undefined;
  }

  /** The snapshot of a completed run (idempotent): made unless there, then recorded. */
  private async snapshot(dataset: string, r: Completed): Promise<string> {
    const name = completionSnapshotName(this.opts.snapshotOnComplete ?? COMPLETION_TEMPLATE, r.completion, r.completedAt);
    const full = `${dataset}@${name}`;
    if (await this.zfs.snapshotExists(full)) {
      const recorded = (await this.zfs.exec(['get', '-H', '-o', 'value', PROP_COMPLETION.completed, dataset])).trim();
      if (recorded === r.completedAt) return full;
    } else await this.zfs.snapshot(full);
    await this.zfs.setAll(dataset, { [PROP_COMPLETION.completed]: r.completedAt, [PROP_COMPLETION.completedSnapshot]: name });
    return full;
  }

  /** The run hook: a run complete (or aborted) and converted, whichever came last, is snapshotted now. */
  async onRun(event: RunEvent): Promise<void> {
    const r = event.run;
    if (this.opts.snapshotOnComplete === undefined || !completed(r) || r.dataset === undefined) return;
    if (event.event !== 'run.complete' && event.event !== 'run.aborted' && event.event !== 'run.converted') return;
    this.log.info(`snapshot ${await this.snapshot(r.dataset, r)} (the run ${r.completion} at ${r.completedAt})`, { dir: r.name });
  }

  /** The end of a conversion (cleanup, before the dataset is marked live): a run complete before it is snapshotted now. */
  async atFinish(job: Job, filesystem: string): Promise<void> {
    if (this.opts.snapshotOnComplete === undefined) return;
    const r = await job.root.runs.get(job.name);
    if (!completed(r)) return;
    const name = completionSnapshotName(this.opts.snapshotOnComplete, r.completion, r.completedAt);
    await job.step(
      'snapshot-complete',
      `snapshot ${filesystem}@${name} (the run ${r.completion} at ${r.completedAt}, before its conversion)`,
      // Not worth failing the conversion's finish over: a sweep takes a snapshot missed.
      () =>
        this.snapshot(filesystem, r).then(
          () => undefined,
          (error: unknown) => job.log.warn(`snapshot ${filesystem}@${name} failed: ${oneLine(error)}; a sweep takes it later`),
        ),
    );
  }

  /** A sweep: the snapshots missed, and readonly=on for the runs whose time has come; a failure is a warning, never the sweep's. */
  async sweep(root: RootContext): Promise<void> {
    if (root.dryRun || !this.wanted) return;
    await this.settleAll(root).catch((error: unknown) =>
      this.log.warn(`after the conversions: ${oneLine(error)}; tried again at the next sweep`, { step: 'sync/zfs' }),
    );
  }

  private async settleAll(root: RootContext): Promise<void> {
    const now = Date.now();
    const runs = (await root.runs.list()).filter((r) => r.dataset !== undefined && (this.missing(r) || this.due(r, now)));
    if (runs.length === 0) return;
    const props = await this.properties(root.rootfs);
    for (const r of runs) {
      const dataset = r.dataset!;
      const p = props.get(dataset);
      if (p === undefined) continue; // gone, or not under this root any more
      try {
        await this.settle(r, dataset, p, now);
      } catch (error) {
        this.log.warn(`after the conversion of ${dataset}: ${oneLine(error)}; tried again at the next sweep`, { dir: r.name });
      }
    }
  }

  private missing(r: RunRecord): boolean {
    return this.opts.snapshotOnComplete !== undefined && completed(r);
  }

  /** Whether readonly's time has come for `r` (already set or not). */
  private due(r: RunRecord, now: number): boolean {
    if (this.opts.readonlyAfterSeconds === undefined) return false;
    const from = readonlyFrom(r);
    return from !== undefined && now - Date.parse(from) >= this.opts.readonlyAfterSeconds * 1000;
  }

  private async settle(r: RunRecord, dataset: string, p: ReadonlyMap<string, string>, now: number): Promise<void> {
    const state = p.get(PROP_STATE);
    if (state !== 'live' && state !== 'swapped') return; // its conversion is not past the commit
    if (this.missing(r) && completed(r) && p.get(PROP_COMPLETION.completed) === undefined) {
      this.log.info(`snapshot ${await this.snapshot(dataset, r)} (the run ${r.completion} at ${r.completedAt}; taken late)`, {
        dir: r.name,
      });
    }
    if (this.due(r, now) && state === 'live' && p.get(PROP_COMPLETION.readonlySince) === undefined) {
      await this.zfs.setAll(dataset, { readonly: 'on', [PROP_COMPLETION.readonlySince]: new Date().toISOString() });
      this.log.info(
        `set readonly=on on ${dataset} (readonlyAfterSeconds: ${this.opts.readonlyAfterSeconds} since the run ${r.completion ?? 'was converted'})`,
        { dir: r.name },
      );
    }
  }

  /** The filesystems under `rootfs` (any depth) and their properties of ours that are set, in one `zfs list`. */
  private async properties(rootfs: string): Promise<Map<string, Map<string, string>>> {
    const columns = [PROP_STATE, PROP_COMPLETION.completed, PROP_COMPLETION.readonlySince];
    const out = await this.zfs.exec(['list', '-H', '-r', '-t', 'filesystem', '-o', ['name', ...columns].join(','), rootfs]);
    const found = new Map<string, Map<string, string>>();
    for (const line of out.split('\n')) {
      if (line === '') continue;
      const [name = '', ...values] = line.split('\t');
      found.set(
        name,
        new Map(columns.flatMap((c, i) => (values[i] === undefined || values[i] === '-' || values[i] === '' ? [] : [[c, values[i]]]))),
      );
    }
    return found;
  }
}
