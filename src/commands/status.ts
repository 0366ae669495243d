/**
 * status: what is in flight or interrupted, and which directories wait to be converted.
 *
 * Truthful from what the kernel and the filters say, not from what a process wrote before it
 * died: a journal record whose lock no process holds is an interrupted job (its process is gone:
 * killed, crashed, rebooted), shown with the exact command that finishes it; a directory is
 * "waiting" only when the filters would take it (a dry filter pass, side-effect free by the
 * hook's contract); the others are listed as ignored, with the filter's reason.
 */
import type { App } from '../app.js';
import {
  Journal,
  RUN_STATES,
  RootEngine,
  RootGoneError,
  humanTime,
  isLocked,
  jobId,
  oneLine,
  oneLineText,
  type ActiveJob,
  type JobRecord,
  type RunRecord,
  type RunState,
} from '../core/index.js';
import { goneLine, goneRoots } from '../core/roots.js';
import { etcConfigFile } from '../core/config.js';
import { previewFilter } from '../core/preview.js';
import { daemonLiveness, type DaemonStatus } from '../daemon/status-file.js';
import { jsonText } from './envelope.js';

/** A job in the journal, as status reports it. */
export interface StatusJob {
  readonly name: string;
  readonly phase: JobRecord['phase'];
  /**
   * running: its lock is held (a live process works on it); interrupted: no process holds its
   * lock (the one that ran it is gone) and it had not recorded a failure; incomplete: it failed
   * and recorded why, and was left for recovery; cleanup-pending: live and published, its cleanup
   * (the kept original's removal) left to the next run for the root (handle --no-wait).
   */
  readonly status: 'running' | 'interrupted' | 'incomplete' | 'cleanup-pending';
  /** What the journal itself says (running, incomplete, rolling-back). */
  readonly recorded: JobRecord['status'];
  /** The process that last wrote the record. */
  readonly pid: number;
  readonly committed: boolean;
  readonly filesystem: string | undefined;
  /** Where the original directory is kept (moved aside), when it was. */
  readonly aside: string | undefined;
  readonly error: string | undefined;
  readonly updatedAt: string;
  /** The command that finishes (or undoes) it; absent while it runs. */
  readonly recover?: string;
}

export interface StatusIgnored {
  readonly name: string;
  readonly reason: string;
  /** A filter refused it (a job for it would fail), rather than skipping it. */
  readonly refused: boolean;
}

/** A run (src/core/runs.ts) as status shows it: its record without what was told of it. */
export type StatusRun = Omit<RunRecord, 'version' | 'rootdir' | 'told'>;

/** The states status lists every run of; the others (settled) only the recent ones. */
const OPEN_RUN_STATES: readonly RunState[] = ['stalled', 'waiting', 'converting'];
/** Settled runs (converted, complete, aborted) listed: those of the last day, at most this many, newest first. */
export const RECENT_RUNS = 50;
const RECENT_MS = 86_400_000;

/**
 * The runs to show and their counts: every open one (stalled first, then waiting and converting,
 * by name), then the settled ones of the last day, newest first, at most RECENT_RUNS; so that
 * a root that knows 10,000 runs gives a bounded answer. `omitted`: the settled ones not listed.
 */
export function selectRuns(
  known: readonly RunRecord[],
  now: number = Date.now(),
): { runs: StatusRun[]; runCounts: Record<RunState, number>; runsOmitted: number } {
  const all = known.filter((r) => RUN_STATES.includes(r.state));
  const runCounts = Object.fromEntries(RUN_STATES.map((s) => [s, 0])) as Record<RunState, number>;
  for (const run of all) runCounts[run.state] += 1;
  const open = OPEN_RUN_STATES.flatMap((state) => all.filter((r) => r.state === state));
  const settled = all.filter((r) => !OPEN_RUN_STATES.includes(r.state));
  const recent = settled
    .filter((r) => now - Date.parse(r.since) <= RECENT_MS)
    .sort((a, b) => Date.parse(b.since) - Date.parse(a.since))
    .slice(0, RECENT_RUNS);
  const shown = [...open, ...recent].map(({ version: _v, rootdir: _r, told: _t, ...rest }) => rest);
  return { runs: shown, runCounts, runsOmitted: settled.length - recent.length };
}

export interface StatusRoot {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly filesystems: number;
  /** Plain directories the filters would take: what the next sweep converts. */
  readonly waiting: string[];
  /** Plain directories the filters leave alone, with why. */
  readonly ignored: StatusIgnored[];
  /**
   * Directories refused for a reason only a change to them or to the config lifts: remembered
   * (not tried again until then; `since` when it was decided) or found so by the filters now.
   */
  readonly refused: { readonly name: string; readonly reason: string; readonly since?: string }[];
  /** Names with work left by an interrupted job (journal or dataset state). */
  readonly leftovers: string[];
  readonly jobs: StatusJob[];
  /** The runs (selectRuns): every open one, the settled ones of the last day; counts of all. */
  readonly runs: StatusRun[];
  readonly runCounts: Record<RunState, number>;
  readonly runsOmitted: number;
  /** Why the root could not be surveyed (its jobs are still listed). */
  readonly error?: string;
  /** The root is gone (filesystem or directory missing): why; its jobs wait until it is back. */
  readonly gone?: string;
  /** Known only from the journal: the config does not list it (recover finishes its jobs). */
  readonly unconfigured?: boolean;
}

/** A word of a command line, quoted for a POSIX shell when it needs to be. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The exact command that finishes every interrupted job under this configuration. */
export function recoverCommand(app: App): string {
  const env = process.env.ZFS_DYNAMIC_CREATOR_STATE_DIR;
  const prefix = env !== undefined ? `ZFS_DYNAMIC_CREATOR_STATE_DIR=${shellWord(env)} ` : '';
  const source = app.config.source;
  const config = source.startsWith('/') && source !== etcConfigFile() ? ` --config ${shellWord(source)}` : '';
  return `${prefix}zfs-dynamic-creator recover${config}`;
}

async function statusJobs(app: App, records: readonly JobRecord[]): Promise<StatusJob[]> {
  const recover = recoverCommand(app);
  const jobs: StatusJob[] = [];
  for (const r of records) {
    const running = await isLocked(app.config.stateDir, r.id);
    const status = running ? 'running' : r.status === 'incomplete' || r.status === 'cleanup-pending' ? r.status : 'interrupted';
    jobs.push({
      name: r.name,
      phase: r.phase,
      status,
      recorded: r.status,
      pid: r.pid,
      committed: r.committed,
      filesystem: r.filesystem,
      aside: r.aside,
      error: r.error,
      updatedAt: r.updatedAt,
      ...(running ? {} : { recover }),
    });
  }
  return jobs;
}

/** Roots only the journal knows (removed from the config, or used through the original command line), with the gone ones noted. */
async function journalOnlyRoots(app: App): Promise<StatusRoot[]> {
  const configured = new Set(app.engines.map((e) => e.context.rootdir));
  const byRoot = new Map<string, JobRecord[]>();
  for (const r of await new Journal(app.config.stateDir).list()) {
    if (configured.has(r.rootdir) || r.id !== jobId(r.rootdir, r.name)) continue;
    byRoot.set(r.rootdir, [...(byRoot.get(r.rootdir) ?? []), r]);
  }
  const notes = new Map((await goneRoots(app.config.stateDir)).map((n) => [n.rootdir, n]));
  const roots: StatusRoot[] = [];
  for (const [rootdir, records] of byRoot) {
    const note = notes.get(rootdir);
    const base = {
      rootfs: records[0]!.rootfs,
      rootdir,
      filesystems: 0,
      waiting: [],
      ignored: [],
      refused: [],
      leftovers: records.map((r) => r.name),
      jobs: await statusJobs(app, records),
      ...selectRuns([]),
      unconfigured: true,
    };
    roots.push(note ? { ...base, gone: note.reason } : base);
  }
  return roots;
}

export async function collectStatus(app: App): Promise<StatusRoot[]> {
  const roots: StatusRoot[] = [];
  for (const engine of app.engines) {
    const records = await engine.journal.list(engine.context.rootdir);
    const jobs = await statusJobs(app, records);
    const base = { rootfs: engine.context.rootfs, rootdir: engine.context.rootdir };
    const runs = selectRuns(await engine.context.runs.list());
    let survey;
    try {
      survey = await engine.survey();
    } catch (error) {
      const why = error instanceof RootGoneError ? { gone: error.message } : { error: oneLine(error) };
      const leftovers = records.map((r) => r.name);
      roots.push({ ...base, filesystems: 0, waiting: [], ignored: [], refused: [], leftovers, jobs, ...runs, ...why });
      continue;
    }
    const waiting: string[] = [];
    const ignored: StatusIgnored[] = [];
    const refused: StatusRoot['refused'][number][] = [];
    for (const name of RootEngine.candidates(survey)) {
      const remembered = await engine.refusals.standing(name);
      if (remembered) {
        refused.push({ name, reason: remembered.reason, since: remembered.since });
        continue;
      }
      const verdict = await previewFilter(engine, name);
      if (verdict.take) waiting.push(name);
      else if (verdict.refused === true) refused.push({ name, reason: verdict.reason });
      else ignored.push({ name, reason: verdict.reason, refused: false });
    }
    for (const name of survey.unfit ?? []) ignored.push({ name, reason: "does not fit the root's layout; left alone", refused: false });
    const leftovers = [...survey.leftovers].sort();
    roots.push({ ...base, filesystems: survey.filesystems.size, waiting, ignored, refused, leftovers, jobs, ...runs });
  }
  return [...roots, ...(await journalOnlyRoots(app))];
}

/** ": 120 of 300 files, 12.0 of 90.0 MiB, 3.1 MiB/s, about 25 s left" (what the terminal line shows). */
export function progressText(p: ActiveJob['progress']): string {
  if (p === undefined) return '';
  const mib = (n: number): string => (n / 2 ** 20).toFixed(1);
  const parts: string[] = [];
  if (p.files !== undefined) parts.push(`${p.files}${p.totalFiles !== undefined ? ` of ${p.totalFiles}` : ''} files`);
  if (p.bytes !== undefined) parts.push(`${mib(p.bytes)}${p.totalBytes !== undefined ? ` of ${mib(p.totalBytes)}` : ''} MiB`);
  if (p.bytesPerSecond !== undefined) parts.push(`${mib(p.bytesPerSecond)} MiB/s`);
  if (p.etaSeconds !== undefined) parts.push(`about ${p.etaSeconds} s left`);
  return parts.length > 0 ? `: ${parts.join(', ')}` : '';
}

/** A root's runs: their counts, then one line each (a stalled one needs attention). */
export function runLines(root: Pick<StatusRoot, 'runs' | 'runCounts' | 'runsOmitted'>): string[] {
  const q = JSON.stringify;
  const counts = RUN_STATES.filter((s) => root.runCounts[s] > 0).map((s) => `${root.runCounts[s]} ${s}`);
  if (counts.length === 0) return [];
  const lines = [`  runs: ${counts.join(', ')}`];
  for (const r of root.runs) {
    const policy = r.policy !== undefined ? `policy ${r.policy}` : undefined;
    // The note may quote the run's folder (names, its files' words): one line, no control character.
    const note = r.note !== undefined ? `: ${oneLineText(r.note)}` : '';
    const dataset = r.dataset !== undefined ? ` in ${r.dataset}` : '';
    const stalled = `stalled since ${humanTime(r.since)}, last written to ${humanTime(r.stalledSince ?? r.since)}`;
    if (r.state === 'stalled')
      lines.push(`  ${'stalled'.padEnd(12)} ${q(r.name)} needs attention${note} (${[stalled, policy].filter(Boolean).join('; ')})`);
    else lines.push(`  ${r.state.padEnd(12)} ${q(r.name)} since ${humanTime(r.since)}${dataset}${note}${policy ? ` (${policy})` : ''}`);
  }
  if (root.runsOmitted > 0) lines.push(`  (${root.runsOmitted} converted, complete or aborted run(s) before the last day not listed)`);
  return lines;
}

/** The daemon's lines: gone without stopping, or running with its jobs. */
function daemonLines(gone: DaemonStatus | undefined, daemon: DaemonStatus | undefined): string[] {
  const q = JSON.stringify;
  const lines: string[] = [];
  if (gone) {
    const jobs =
      gone.active.length > 0 ? `; it had ${gone.active.length} job(s) in flight, which the next run for their root finishes or undoes` : '';
    lines.push(
      `daemon not running (pid ${gone.pid}, last seen ${humanTime(gone.updatedAt)}): it ended without stopping (killed, crashed or hung)${jobs}; start it again (systemctl start zfs-dynamic-creator)`,
    );
  }
  if (daemon) {
    const waiting = daemon.active.filter((a) => !a.working);
    lines.push(
      `daemon (pid ${daemon.pid}, since ${humanTime(daemon.startedAt)}): ${daemon.active.length - waiting.length} of ${daemon.slots.size} work slot(s) busy, ${waiting.length} job(s) waiting, ${daemon.queued.length} queued (as of ${humanTime(daemon.updatedAt)})`,
    );
    for (const a of daemon.active) {
      const step = a.step !== undefined && a.stepSince !== undefined ? `, step ${a.step} since ${humanTime(a.stepSince)}` : '';
      lines.push(
        `  ${(a.working ? 'working' : 'waiting').padEnd(12)} ${q(`${a.rootdir}/${a.name}`)} phase ${a.phase}${a.waiting ? `, waiting for ${a.waiting}` : ''} (since ${humanTime(a.since)})${step}${progressText(a.progress)}`,
      );
    }
    for (const x of daemon.queued) lines.push(`  ${'queued'.padEnd(12)} ${q(`${x.rootdir}/${x.name}`)}`);
  }
  return lines;
}

export async function status(app: App, options: { json: boolean }): Promise<number> {
  const roots = await collectStatus(app);
  const liveness = await daemonLiveness(app.config.stateDir);
  const daemon = liveness && 'running' in liveness ? liveness.running : undefined;
  const gone = liveness && 'gone' in liveness ? liveness.gone : undefined;
  if (options.json) {
    const lastDaemon = gone ? { pid: gone.pid, startedAt: gone.startedAt, updatedAt: gone.updatedAt } : null;
    process.stdout.write(
      jsonText('status', { config: app.config.source, stateDir: app.config.stateDir, daemon: daemon ?? null, lastDaemon, roots }),
    );
    return 0;
  }
  const q = JSON.stringify;
  const lines: string[] = [];
  lines.push(...daemonLines(gone, daemon));
  let toRecover: string | undefined;
  for (const root of roots) {
    if (root.gone !== undefined) {
      // One line: its jobs wait, untouched, until it is back.
      lines.push(goneLine(root.rootdir, root.gone, root.jobs.length));
      continue;
    }
    if (root.unconfigured) {
      lines.push(
        `${root.rootdir} (${root.rootfs}): not in the configuration; ${root.jobs.length} job(s) in the journal, which 'zfs-dynamic-creator recover' finishes`,
      );
    } else if (root.error !== undefined) {
      lines.push(`${root.rootdir} (${root.rootfs}): cannot be surveyed: ${root.error}; ${root.jobs.length} job(s) in the journal`);
    } else {
      const ignored = root.ignored.length > 0 ? `, ${root.ignored.length} skipped by the filters` : '';
      const refused = root.refused.length > 0 ? `, ${root.refused.length} refused (need attention)` : '';
      const stalled = root.runCounts.stalled > 0 ? `, ${root.runCounts.stalled} run(s) stalled (need attention)` : '';
      lines.push(
        `${root.rootdir} (${root.rootfs}): ${root.filesystems} filesystem(s), ${root.waiting.length} directory(ies) waiting${refused}${stalled}${ignored}, ${root.jobs.length} job(s) in the journal`,
      );
    }
    // A directory whose run is listed is said there, with its state and since when.
    const listed = new Set(root.runs.filter((r) => OPEN_RUN_STATES.includes(r.state)).map((r) => r.name));
    for (const name of root.waiting.filter((n) => !listed.has(n))) lines.push(`  ${'waiting'.padEnd(12)} ${q(name)}`);
    lines.push(...runLines(root));
    for (const r of root.refused) {
      const when =
        r.since !== undefined
          ? `refused at ${humanTime(r.since)}, not tried again until the directory or the config changes`
          : 'a job for it would be refused';
      lines.push(`  ${'refused'.padEnd(12)} ${q(r.name)} needs attention: ${r.reason} (${when})`);
    }
    for (const i of root.ignored) lines.push(`  ${'skipped'.padEnd(12)} ${q(i.name)} (${i.reason})`);
    for (const j of root.jobs) {
      const what = [`phase ${j.phase}`];
      if (j.committed) what.push('committed');
      if (j.status === 'interrupted') what.push(`its process (pid ${j.pid}) is gone`);
      if (j.status === 'cleanup-pending') what.push('live and published, its cleanup left to the next run for the root');
      let line = `  ${j.status.padEnd(12)} ${q(j.name)} ${what.join(', ')}${j.error ? `: ${j.error}` : ''}`;
      if (j.aside !== undefined) line += `; the original is kept at ${q(j.aside)}`;
      if (j.recover !== undefined) {
        line += `; finish it with: ${j.recover}`;
        toRecover = j.recover;
      }
      lines.push(line);
    }
    const journalled = new Set(root.jobs.map((j) => j.name));
    for (const name of root.leftovers.filter((n) => !journalled.has(n))) {
      toRecover = recoverCommand(app);
      lines.push(
        `  ${'leftover'.padEnd(12)} ${q(name)} left by an interrupted conversion (no journal record); finish it with: ${toRecover}`,
      );
    }
  }
  if (toRecover !== undefined) lines.push(`interrupted work is left; to finish (or undo) all of it, run: ${toRecover}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
