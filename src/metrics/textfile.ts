/**
 * Metrics for node_exporter's textfile collector (config: `metrics: { textfile: PATH }`).
 *
 * The counters live in <stateDir>/metrics.json, not in the .prom file: the stateDir is the
 * tool's own trusted, durable place (root-only, kept across reinstalls and restarts), while the
 * textfile directory belongs to node_exporter and a file there may be removed or rewritten by
 * others. Every change is a read-modify-write of metrics.json under the kernel lock "metrics"
 * (src/core/lock.ts), after which the .prom file is written from it (temporary file in the same
 * directory, then rename; mode 0644), so that concurrent processes (incron starts one `handle`
 * per directory, beside the daemon and reconcile) never lose an increment, and the collector
 * never reads half a file. A lost metrics.json starts the counters from zero, which Prometheus
 * treats as a counter reset.
 *
 * The daemon's gauges (queue length, jobs working and waiting) are kept with its pid and shown
 * as 0 once that process is gone; its heartbeat (a timestamp written every HEARTBEAT_SECONDS)
 * is what tells that it runs: a file cannot say that its writer died, a timestamp ages.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { listRefusals } from '../core/refusals.js';
import { Journal } from '../core/journal.js';
import {
  OUTCOME_KINDS,
  FINAL_RUNS_KEPT_DAYS,
  RUN_STATES,
  acquireLock,
  isLocked,
  readRuns,
  readRun,
  runFile,
  runsDir,
  writeFileAtomic,
  type JobObserver,
  type JobProgress,
  type JobRecord,
  type Outcome,
  type OutcomeKind,
  type RunRecord,
  type RunState,
} from '../core/index.js';

export const PREFIX = 'zfs_dynamic_creator';
/** The runs' records are read again at most this often by one process (the daemon's heartbeat catches up). */
const RUNS_REREAD_MS = 10_000;
/**
 * The outcomes counted. Not 'skipped': incron starts a process for every directory made in a
 * root, and a name the filters leave alone is answered without a lock or a write (start-up time
 * of that path matters more than a count of names nobody asked to convert). Not 'refused': the
 * refusals standing are a gauge of their own. Not 'waiting': a run waiting for its completion is
 * looked at every minute for days; the runs' states are a gauge of their own.
 */
export const OUTCOMES: readonly OutcomeKind[] = OUTCOME_KINDS.filter(
  (kind) => kind !== 'skipped' && kind !== 'refused' && kind !== 'waiting',
);
/** Conversion durations (seconds): from the job's start (waits included) to its end. */
export const DURATION_BUCKETS: readonly number[] = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];
const LOCK_ID = 'metrics';
/** How often the daemon's heartbeat is written while it runs. */
export const HEARTBEAT_SECONDS = 10;
const LOCK_WAIT_MS = 30_000;

export interface RootMetrics {
  outcomes: Partial<Record<OutcomeKind, number>>;
  files: number;
  bytes: number;
  /** Cumulative counts per bucket of DURATION_BUCKETS (then +Inf = count). */
  durationBuckets: number[];
  durationSum: number;
  durationCount: number;
  /** Epoch seconds of the last conversion that succeeded (converted or recovered). */
  lastSuccess?: number;
  /** Epoch seconds when a sweep of the root (reconcile, the daemon's) last ended. */
  lastSweep?: number;
}

export interface MetricsState {
  version: 1;
  roots: Record<string, RootMetrics>;
  daemon?: { pid: number; queued: number; working: number; waiting: number };
  /** Epoch seconds when the daemon last said it was alive (kept after it stops: it ages). */
  heartbeat?: number;
}

export const emptyState = (): MetricsState => ({ version: 1, roots: {} });

const emptyRoot = (): RootMetrics => ({
  outcomes: {},
  files: 0,
  bytes: 0,
  durationBuckets: DURATION_BUCKETS.map(() => 0),
  durationSum: 0,
  durationCount: 0,
});

const finite = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);

/** A state read back from JSON, anything malformed dropped (a counter restarts from zero). */
export function parseState(text: string): MetricsState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return emptyState();
  }
  const state = emptyState();
  if (typeof raw !== 'object' || raw === null || (raw as { version?: unknown }).version !== 1) return state;
  const roots = (raw as { roots?: unknown }).roots;
  if (typeof roots === 'object' && roots !== null) {
    for (const [rootdir, value] of Object.entries(roots as Record<string, unknown>)) {
      if (typeof value !== 'object' || value === null) continue;
      const v = value as Partial<Record<keyof RootMetrics, unknown>>;
      const root = emptyRoot();
      for (const kind of OUTCOMES) {
        const n = finite((v.outcomes as Record<string, unknown> | undefined)?.[kind]);
        if (n > 0) root.outcomes[kind] = n;
      }
      root.files = finite(v.files);
      root.bytes = finite(v.bytes);
      if (Array.isArray(v.durationBuckets) && v.durationBuckets.length === DURATION_BUCKETS.length)
        root.durationBuckets = v.durationBuckets.map(finite);
      root.durationSum = finite(v.durationSum);
      root.durationCount = finite(v.durationCount);
      if (finite(v.lastSuccess) > 0) root.lastSuccess = finite(v.lastSuccess);
      if (finite(v.lastSweep) > 0) root.lastSweep = finite(v.lastSweep);
      state.roots[rootdir] = root;
    }
  }
  const daemon = (raw as { daemon?: unknown }).daemon as Record<string, unknown> | undefined;
  if (daemon && Number.isInteger(daemon.pid) && (daemon.pid as number) > 0) {
    state.daemon = {
      pid: daemon.pid as number,
      queued: finite(daemon.queued),
      working: finite(daemon.working),
      waiting: finite(daemon.waiting),
    };
  }
  const heartbeat = finite((raw as { heartbeat?: unknown }).heartbeat);
  if (heartbeat > 0) state.heartbeat = heartbeat;
  return state;
}

/** Adds one job's end to the state. */
export function recordOutcome(
  state: MetricsState,
  rootdir: string,
  outcome: Outcome,
  copied: JobRecord['copied'],
  at: Date = new Date(),
): void {
  if (!OUTCOMES.includes(outcome.kind)) return;
  const root = (state.roots[rootdir] ??= emptyRoot());
  root.outcomes[outcome.kind] = (root.outcomes[outcome.kind] ?? 0) + 1;
  const success = outcome.kind === 'converted' || outcome.kind === 'recovered';
  if (!success) return;
  root.lastSuccess = Math.floor(at.getTime() / 1000);
  if (copied !== undefined) {
    root.files += finite(copied.files);
    root.bytes += finite(copied.bytes);
  }
  if (outcome.kind === 'converted') {
    const seconds = finite(outcome.durationMs) / 1000;
    DURATION_BUCKETS.forEach((le, i) => {
      if (seconds <= le) root.durationBuckets[i]! += 1;
    });
    root.durationSum += seconds;
    root.durationCount += 1;
  }
}

/** A label value as the exposition format wants it: backslash, double quote and newline escaped. */
export function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function number(n: number): string {
  return Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN';
}

/** Jobs in the journal that no process works on (interrupted, or failed mid-way), per root. */
export interface Interrupted {
  readonly count: number;
  /** Epoch seconds of the oldest one's last journal write: since when it waits for recovery. */
  readonly oldest: number;
}

/** The journal's jobs whose lock no process holds, per root (as `status` tells them apart). */
export async function interruptedJobs(stateDir: string): Promise<Map<string, Interrupted>> {
  const out = new Map<string, Interrupted>();
  for (const record of await new Journal(stateDir).list()) {
    if (await isLocked(stateDir, record.id)) continue;
    const at = Math.floor(Date.parse(record.updatedAt) / 1000);
    const seen = out.get(record.rootdir);
    out.set(record.rootdir, { count: (seen?.count ?? 0) + 1, oldest: Math.min(seen?.oldest ?? at, Number.isFinite(at) ? at : 0) });
  }
  return out;
}

/** A root's runs (src/core/runs.ts), as the textfile shows them. */
export interface RunGauges {
  readonly states: Record<RunState, number>;
  /** Epoch seconds: when the run waiting longest entered the waiting state. */
  readonly oldestWaiting?: number;
  /** Epoch seconds: when the run stalled longest ago was last written to. */
  readonly oldestStalled?: number;
}

const epoch = (iso: string | undefined): number | undefined => {
  const ms = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
};
const oldest = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);

/** The runs per root: how many in each state, the oldest waiting and the oldest stall. */
export function runGauges(runs: readonly RunRecord[]): Map<string, RunGauges> {
  const out = new Map<string, { states: Record<RunState, number>; oldestWaiting?: number; oldestStalled?: number }>();
  for (const run of runs) {
    if (!RUN_STATES.includes(run.state)) continue;
    let g = out.get(run.rootdir);
    if (g === undefined)
      out.set(run.rootdir, (g = { states: Object.fromEntries(RUN_STATES.map((s) => [s, 0])) as Record<RunState, number> }));
    g.states[run.state] += 1;
    const at = (run.state === 'stalled' ? epoch(run.stalledSince) : undefined) ?? epoch(run.since);
    if (run.state === 'waiting') g.oldestWaiting = oldest(g.oldestWaiting, at);
    if (run.state === 'stalled') g.oldestStalled = oldest(g.oldestStalled, at);
  }
  return out;
}

/**
 * The .prom text (Prometheus text exposition format 0.0.4). `alive`: whether the daemon's pid
 * still runs; `refused`: remembered refusals per root (src/core/refusals.ts); `interrupted`: the
 * journal's jobs no process works on; `runs`: the runs' gauges per root.
 */
export function renderMetrics(
  state: MetricsState,
  alive: (pid: number) => boolean = pidAlive,
  refused: ReadonlyMap<string, number> = new Map(),
  interrupted: ReadonlyMap<string, Interrupted> = new Map(),
  runs: ReadonlyMap<string, RunGauges> = new Map(),
): string {
  const out: string[] = [];
  const roots = Object.keys(state.roots).sort();
  const root = (r: string): string => `root="${labelValue(r)}"`;

  family(
    out,
    'conversions_total',
    'counter',
    `Jobs that ended, by root and outcome (${OUTCOMES.join(', ')}; directories the filters leave alone are not counted).`,
  );
  for (const r of roots)
    for (const kind of OUTCOMES)
      out.push(`${PREFIX}_conversions_total{${root(r)},outcome="${kind}"} ${number(state.roots[r]!.outcomes[kind] ?? 0)}`);
  family(out, 'converted_files_total', 'counter', 'Regular files in the verified copies of converted directories.');
  for (const r of roots) out.push(`${PREFIX}_converted_files_total{${root(r)}} ${number(state.roots[r]!.files)}`);
  family(
    out,
    'converted_bytes_total',
    'counter',
    'Bytes (apparent sizes of regular files) in the verified copies of converted directories.',
  );
  for (const r of roots) out.push(`${PREFIX}_converted_bytes_total{${root(r)}} ${number(state.roots[r]!.bytes)}`);
  family(
    out,
    'conversion_duration_seconds',
    'histogram',
    'How long a conversion took, from the start of its job (waits included) to its end.',
  );
  for (const r of roots) {
    const m = state.roots[r]!;
    DURATION_BUCKETS.forEach((le, i) =>
      out.push(`${PREFIX}_conversion_duration_seconds_bucket{${root(r)},le="${le}"} ${number(m.durationBuckets[i] ?? 0)}`),
    );
    out.push(`${PREFIX}_conversion_duration_seconds_bucket{${root(r)},le="+Inf"} ${number(m.durationCount)}`);
    out.push(`${PREFIX}_conversion_duration_seconds_sum{${root(r)}} ${number(m.durationSum)}`);
    out.push(`${PREFIX}_conversion_duration_seconds_count{${root(r)}} ${number(m.durationCount)}`);
  }
  family(
    out,
    'last_success_timestamp_seconds',
    'gauge',
    'When a conversion last succeeded (converted or recovered), in seconds since the epoch; 0 if never.',
  );
  for (const r of roots) out.push(`${PREFIX}_last_success_timestamp_seconds{${root(r)}} ${number(state.roots[r]!.lastSuccess ?? 0)}`);
  attentionFamilies(out, roots, refused, interrupted);
  runFamilies(out, roots, runs);
  family(
    out,
    'last_sweep_timestamp_seconds',
    'gauge',
    'When a sweep of the root (reconcile, its timer, or the daemon) last ended, in seconds since the epoch; 0 if never. Alert on its age to learn that the timer or the daemon stopped sweeping.',
  );
  for (const r of roots) out.push(`${PREFIX}_last_sweep_timestamp_seconds{${root(r)}} ${number(state.roots[r]!.lastSweep ?? 0)}`);
  daemonFamilies(out, state, alive);
  return `${out.join('\n')}\n`;
}

/** What needs someone: refused directories and interrupted jobs, per root. */
function attentionFamilies(
  out: string[],
  roots: readonly string[],
  refused: ReadonlyMap<string, number>,
  interrupted: ReadonlyMap<string, Interrupted>,
): void {
  const root = (r: string): string => `root="${labelValue(r)}"`;
  family(
    out,
    'refused_directories',
    'gauge',
    "Directories refused for a reason only a change to the directory or the config lifts (a name ZFS forbids, over the quota): remembered, not retried, not counted as failures; 'status' lists them.",
  );
  for (const r of [...new Set([...roots, ...refused.keys()])].sort())
    out.push(`${PREFIX}_refused_directories{${root(r)}} ${number(refused.get(r) ?? 0)}`);
  family(
    out,
    'interrupted_jobs',
    'gauge',
    "Jobs no process works on (interrupted, or failed mid-way), left for 'recover' or the next sweep; 'status' lists them.",
  );
  for (const r of [...new Set([...roots, ...interrupted.keys()])].sort())
    out.push(`${PREFIX}_interrupted_jobs{${root(r)}} ${number(interrupted.get(r)?.count ?? 0)}`);
  family(
    out,
    'oldest_interrupted_job_timestamp_seconds',
    'gauge',
    'When the oldest of those jobs was last written to the journal, in seconds since the epoch; only for a root that has one. Alert on its age.',
  );
  for (const r of [...interrupted.keys()].sort())
    out.push(`${PREFIX}_oldest_interrupted_job_timestamp_seconds{${root(r)}} ${number(interrupted.get(r)!.oldest)}`);
}

/** The runs by state, and since when the oldest waits or is stalled, per root. */
function runFamilies(out: string[], roots: readonly string[], runs: ReadonlyMap<string, RunGauges>): void {
  const root = (r: string): string => `root="${labelValue(r)}"`;
  family(
    out,
    'runs',
    'gauge',
    `Runs (each directory followed from its detection to its completion) by state: ${RUN_STATES.join(', ')}; complete and aborted ones are kept ${FINAL_RUNS_KEPT_DAYS} days. 'status' lists them.`,
  );
  for (const r of [...new Set([...roots, ...runs.keys()])].sort())
    for (const s of RUN_STATES) out.push(`${PREFIX}_runs{${root(r)},state="${s}"} ${number(runs.get(r)?.states[s] ?? 0)}`);
  family(
    out,
    'oldest_waiting_run_timestamp_seconds',
    'gauge',
    'When the run waiting longest (for its quiet period or its completion) began to wait, in seconds since the epoch; only for a root that has one.',
  );
  for (const [r, g] of [...runs].sort(([a], [b]) => (a < b ? -1 : 1)))
    if (g.oldestWaiting !== undefined) out.push(`${PREFIX}_oldest_waiting_run_timestamp_seconds{${root(r)}} ${number(g.oldestWaiting)}`);
  family(
    out,
    'oldest_stalled_run_timestamp_seconds',
    'gauge',
    'When the run stalled longest ago was last written to, in seconds since the epoch; only for a root that has a stalled run.',
  );
  for (const [r, g] of [...runs].sort(([a], [b]) => (a < b ? -1 : 1)))
    if (g.oldestStalled !== undefined) out.push(`${PREFIX}_oldest_stalled_run_timestamp_seconds{${root(r)}} ${number(g.oldestStalled)}`);
}

function family(out: string[], name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
  out.push(`# HELP ${PREFIX}_${name} ${help}`, `# TYPE ${PREFIX}_${name} ${type}`);
}

/** The daemon's own lines: its heartbeat, and its queue and jobs while its pid runs. */
function daemonFamilies(out: string[], state: MetricsState, alive: (pid: number) => boolean): void {
  // No "daemon_up": a file cannot say that its writer died. The heartbeat ages instead.
  family(
    out,
    'daemon_heartbeat_timestamp_seconds',
    'gauge',
    `When the daemon (watch) last said it was alive (every ${HEARTBEAT_SECONDS} s while it runs), in seconds since the epoch; 0 if never. It stops on any end, SIGKILL included: alert on time() - this > ${HEARTBEAT_SECONDS * 6}.`,
  );
  out.push(`${PREFIX}_daemon_heartbeat_timestamp_seconds ${number(state.heartbeat ?? 0)}`);
  const daemon = state.daemon !== undefined && alive(state.daemon.pid) ? state.daemon : undefined;
  family(out, 'queue_length', 'gauge', "Directories in the daemon's queue, seen and not yet started (as of its last heartbeat).");
  out.push(`${PREFIX}_queue_length ${number(daemon?.queued ?? 0)}`);
  family(out, 'jobs', 'gauge', "The daemon's jobs in flight: working (holding a work slot) or waiting (quiet or grace period, a slot).");
  out.push(`${PREFIX}_jobs{state="working"} ${number(daemon?.working ?? 0)}`);
  out.push(`${PREFIX}_jobs{state="waiting"} ${number(daemon?.waiting ?? 0)}`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const metricsStateFile = (stateDir: string): string => join(stateDir, 'metrics.json');

/** The metrics of a config: every change under the lock, then the textfile written again. */
export class MetricsTextfile {
  private lastGauges = '';
  private lastBeat = 0;
  /** The runs' gauges as last read, and the runs directory's time then (the daemon writes every second). */
  private runsRead: { mtimeMs: number; readAt: number; records: Map<string, RunRecord> } | undefined;

  constructor(
    readonly textfile: string,
    readonly stateDir: string,
  ) {}

  /** Applies `change` to the state under the lock and writes both files. */
  async update(change: (state: MetricsState) => void, job?: JobProgress): Promise<void> {
    const lock = await acquireLock(this.stateDir, LOCK_ID, {
      waitMs: LOCK_WAIT_MS,
      busyMessage: 'another process held the metrics lock for 30 s',
    });
    try {
      const file = metricsStateFile(this.stateDir);
      const state = parseState(await readFile(file, 'utf8').catch(() => ''));
      change(state);
      await writeFileAtomic(file, `${JSON.stringify(state)}\n`, 0o600);
      // The counters are kept even when the textfile cannot be written: the next write shows them.
      const refused = new Map<string, number>();
      for (const r of await listRefusals(join(this.stateDir, 'refusals'))) refused.set(r.rootdir, (refused.get(r.rootdir) ?? 0) + 1);
      const runs = await this.runs(job);
      await writeFileAtomic(
        this.textfile,
        renderMetrics(state, pidAlive, refused, await interruptedJobs(this.stateDir), runs),
        0o644,
      ).catch((error: unknown) => {
        throw new Error(
          `metrics textfile ${this.textfile} (config metrics.textfile) not written: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
      });
    } finally {
      await lock.release();
    }
  }

  /**
   * The daemon's gauges and heartbeat, written when they changed or the heartbeat is due
   * (undefined: the daemon stopped; its heartbeat is left to age).
   */
  async daemon(gauges: { queued: number; working: number; waiting: number } | undefined, now: number = Date.now()): Promise<void> {
    const key = JSON.stringify(gauges ?? null);
    if (key === this.lastGauges && (gauges === undefined || now - this.lastBeat < HEARTBEAT_SECONDS * 1000)) return;
    this.lastGauges = key;
    this.lastBeat = now;
    await this.update((state) => {
      state.heartbeat = Math.floor(now / 1000);
      if (gauges === undefined) {
        if (state.daemon?.pid === process.pid) delete state.daemon;
      } else state.daemon = { pid: process.pid, ...gauges };
    });
  }

  /** A sweep of `rootdir` ended (reconcile, the daemon's sweeper). */
  async swept(rootdir: string, at: Date = new Date()): Promise<void> {
    await this.update((state) => {
      const root = (state.roots[rootdir] ??= emptyRoot());
      root.lastSweep = Math.floor(at.getTime() / 1000);
    });
  }

  /** Counts each job's end (dry runs are not counted: nothing was done). */
  observer(): JobObserver {
    return {
      update: () => undefined,
      end: async (job: JobProgress, outcome: Outcome, record: Readonly<JobRecord>) => {
        // A refusal is not counted: the textfile is written again for its gauge; a run that waits,
        // only when its run changed (it stalled, say), not at each of its looks.
        if (job.dryRun || outcome.kind === 'skipped') return;
        if (!OUTCOMES.includes(outcome.kind) && outcome.kind !== 'refused' && !(await this.runChanged(job))) return;
        await this.update((state) => recordOutcome(state, job.rootdir, outcome, record.copied), job);
      },
    };
  }

  /**
   * The runs' gauges, read again only when the runs directory changed (every record is written by
   * a rename into it, every forget unlinks): a root may know 10,000 runs. A change within a second
   * of the last read is not trusted to the clock's granularity: read again.
   */
  private async runs(changed?: JobProgress): Promise<Map<string, RunGauges>> {
    const readAt = Date.now();
    const mtimeMs = (await stat(runsDir(this.stateDir)).catch(() => undefined))?.mtimeMs ?? 0;
    const seen = this.runsRead;
    const settled = seen !== undefined && seen.mtimeMs === mtimeMs && seen.readAt - mtimeMs > 1000;
    // Every record's write changes the directory's time: runs that change every minute must not
    // make each job's end read them all; the job's own run is read, the rest at most every 10 s.
    if (seen !== undefined && (settled || readAt - seen.readAt < RUNS_REREAD_MS)) {
      if (changed !== undefined) {
        const key = `${changed.rootdir}\0${changed.name}`;
        const run = await readRun(runFile(this.stateDir, changed.rootdir, changed.name), changed.rootdir);
        if (run === undefined) seen.records.delete(key);
        else seen.records.set(key, run);
      }
      return runGauges([...seen.records.values()]);
    }
    const records = new Map((await readRuns(this.stateDir)).map((r) => [`${r.rootdir}\0${r.name}`, r] as const));
    this.runsRead = { mtimeMs, readAt, records };
    return runGauges([...records.values()]);
  }

  /** Whether the job's run was written after the textfile's last write (metrics.json's time). */
  private async runChanged(job: JobProgress): Promise<boolean> {
    const run = await stat(runFile(this.stateDir, job.rootdir, job.name)).catch(() => undefined);
    const last = await stat(metricsStateFile(this.stateDir)).catch(() => undefined);
    return run !== undefined && (last === undefined || run.mtimeMs >= last.mtimeMs);
  }
}
