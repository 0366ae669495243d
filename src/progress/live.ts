/**
 * The live progress lines on a terminal: one line per job in flight (at most MAX_LINES, then a
 * line that counts the rest), redrawn in place at most every REDRAW_MS, and every TICK_MS while
 * a job is in flight so that waits and ETAs move. Log lines scroll above it: every write to
 * stderr erases the lines and draws them again (the overlay of core/logger.ts).
 *
 * Loaded only when stderr is a terminal (src/progress/index.ts). Written here rather than taken
 * from a library (log-update, cli-progress): what it needs is a dozen escape sequences, and
 * lines cut to the terminal's width never wrap, which is what those libraries mostly handle.
 */
import { setStderrOverlay, writeStderr, type StderrOverlay } from '../core/logger.js';
import type { JobObserver, JobProgress } from '../core/progress.js';
import { RateMeter, fitLine, jobLine } from './format.js';

export const MAX_LINES = 5;
/** A job shows only once it has run this long (those that end at once, a skip, never flash). */
export const SHOW_AFTER_MS = 300;
export const REDRAW_MS = 250;
export const TICK_MS = 1000;

/** Clear the line, and each line above it up to `lines` in all. */
export function eraseLines(lines: number): string {
  if (lines <= 0) return '';
  return `\r\x1b[2K${'\x1b[1A\x1b[2K'.repeat(lines - 1)}`;
}

interface Tracked {
  readonly meter: RateMeter;
  step: string | undefined;
}

export interface LiveOptions {
  /** The terminal's width now. */
  readonly columns?: () => number;
  readonly now?: () => number;
}

export class LiveLines implements JobObserver, StderrOverlay {
  private readonly jobs = new Map<JobProgress, Tracked>();
  private drawn = 0;
  private lastDraw = 0;
  private pending: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private readonly columns: () => number;
  private readonly now: () => number;

  constructor(options: LiveOptions = {}) {
    this.columns = options.columns ?? (() => process.stderr.columns || 80);
    this.now = options.now ?? Date.now;
  }

  /** Puts the lines under the log of this process (until the process exits). */
  install(): this {
    setStderrOverlay(this);
    process.once('exit', () => setStderrOverlay(undefined));
    return this;
  }

  update(job: JobProgress): void {
    let tracked = this.jobs.get(job);
    if (!tracked) {
      tracked = { meter: new RateMeter(), step: job.step };
      this.jobs.set(job, tracked);
      this.ticker ??= setInterval(() => this.redraw(), TICK_MS).unref();
    }
    if (tracked.step !== job.step) {
      tracked.step = job.step;
      tracked.meter.reset();
    }
    if (job.bytes !== undefined) tracked.meter.add(this.now(), job.bytes);
    this.schedule();
  }

  end(job: JobProgress): void {
    this.jobs.delete(job);
    if (this.jobs.size === 0 && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
    this.redraw();
  }

  erase(): string {
    const text = eraseLines(this.drawn);
    this.drawn = 0;
    return text;
  }

  draw(): string {
    const lines = this.lines(this.now());
    this.drawn = lines.length;
    this.lastDraw = this.now();
    return lines.join('\n');
  }

  /** The lines as they would be drawn now. */
  lines(now: number): string[] {
    const shown = [...this.jobs].filter(([job]) => now - job.startedAt >= SHOW_AFTER_MS);
    const columns = this.columns();
    const head = shown.length > MAX_LINES ? shown.slice(0, MAX_LINES - 1) : shown;
    const lines = head.map(([job, t]) => fitLine(jobLine(job, now, t.meter.rate(now), columns), columns));
    if (head.length < shown.length) {
      const rest = shown.slice(head.length).map(([job]) => job);
      const waiting = rest.filter((j) => j.waiting !== undefined).length;
      lines.push(fitLine(`… and ${rest.length} more job(s): ${rest.length - waiting} working, ${waiting} waiting`, columns));
    }
    return lines;
  }

  private schedule(): void {
    if (this.pending) return;
    const wait = REDRAW_MS - (this.now() - this.lastDraw);
    if (wait <= 0) {
      this.redraw();
      return;
    }
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.redraw();
    }, wait).unref();
  }

  private redraw(): void {
    if (this.pending) {
      clearTimeout(this.pending);
      this.pending = undefined;
    }
    writeStderr('');
  }
}
