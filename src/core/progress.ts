/**
 * Progress: what a job is doing now, for whoever watches (a live line on a terminal, periodic
 * "still …" lines elsewhere, metrics at its end). The core keeps the state (phase, step, what
 * the job waits for and since when) and plugins report their counts into it with
 * job.progress(); the core draws nothing and knows no copy tool. Observers are given to the
 * engine (EngineOptions.observers) by the command line.
 */
import type { Logger, JobRecord, Outcome } from './types.js';

/** What a plugin reports with job.progress(): any of the fields; the others stay as they were. */
export interface ProgressReport {
  /** Regular files done so far in the current step (a copy: files copied). */
  readonly files?: number;
  /** Bytes done so far in the current step. */
  readonly bytes?: number;
  /** What the step will have done at its end, when known (the tree's files; kept across steps). */
  readonly totalFiles?: number;
  readonly totalBytes?: number;
  /** A few words on where the step or the wait stands ("quiet for 4 of 10 s"); '' clears it. */
  readonly note?: string;
}

/**
 * A job's progress. A live view, changed in place by the job: an observer reads it when it
 * draws, and does not keep it after end().
 */
export interface JobProgress {
  readonly rootdir: string;
  readonly name: string;
  /** Epoch milliseconds. */
  readonly startedAt: number;
  readonly dryRun: boolean;
  /** The job's logger (names the directory): for observers that say something in the log. */
  readonly log: Logger;
  phase: string;
  /** When the phase began (epoch milliseconds). */
  phaseSince: number;
  /** The step running now ("migrate/copy"), and since when; undefined between steps. */
  step: string | undefined;
  stepSince: number;
  /** What the job waits for (job.waiting(), a slot), and since when. */
  waiting: { readonly reason: string; readonly since: number } | undefined;
  files: number | undefined;
  bytes: number | undefined;
  totalFiles: number | undefined;
  totalBytes: number | undefined;
  note: string | undefined;
}

export interface JobObserver {
  /** Something changed (often: many times a second during a copy; keep it cheap). */
  update(job: JobProgress): void;
  /** The job ended; awaited before the job's outcome is returned (errors are logged, never fatal). */
  end?(job: JobProgress, outcome: Outcome, record: Readonly<JobRecord>): void | Promise<void>;
}

export function newProgress(init: {
  rootdir: string;
  name: string;
  dryRun: boolean;
  log: Logger;
  phase: string;
  startedAt?: number;
}): JobProgress {
  const now = init.startedAt ?? Date.now();
  return {
    rootdir: init.rootdir,
    name: init.name,
    startedAt: now,
    dryRun: init.dryRun,
    log: init.log,
    phase: init.phase,
    phaseSince: now,
    step: undefined,
    stepSince: now,
    waiting: undefined,
    files: undefined,
    bytes: undefined,
    totalFiles: undefined,
    totalBytes: undefined,
    note: undefined,
  };
}
