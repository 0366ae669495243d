/**
 * How progress reads, for the live line on a terminal and the periodic "still …" log lines:
 * sizes in binary units, rates over a sliding window, durations as h:mm:ss, one line per job.
 * Pure functions of their arguments (the time included), so that tests can pin them down.
 */
import { oneLineText } from '../core/logger.js';
import type { JobProgress } from '../core/progress.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** 0 B, 1023 B, 1.50 KiB, 12.3 MiB, 288 MiB, 1.20 GiB: three significant digits from KiB on. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '?';
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  // 1023.9 KiB would print as "1024 KiB": one unit up instead.
  if (Number(value.toFixed(0)) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** 41.2 MiB/s; '?' when there is no rate yet. */
export function formatRate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond) ? '?/s' : `${formatBytes(bytesPerSecond)}/s`;
}

/** 0:07, 12:34, 1:02:03 (whole seconds, rounded up so that an ETA never says 0:00 too early). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const total = Math.ceil(seconds - 1e-9);
  if (total >= 100 * 3600) return '>99 h';
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The local wall-clock time, 10:41:02. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** 1,234 */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/**
 * Seconds left at `rate` bytes a second to go from `done` to `total`; undefined when it cannot
 * be told (no total, no rate yet, or more done than the total said: the tree grew).
 */
export function eta(done: number | undefined, total: number | undefined, rate: number | undefined): number | undefined {
  if (done === undefined || total === undefined || rate === undefined || !(rate > 0) || done > total) return undefined;
  return (total - done) / rate;
}

/**
 * A rate over the last `windowMs` (10 s by default): how fast bytes go now, not since the start,
 * so that a copy that slows down (small files after big ones) shows it within seconds.
 */
export class RateMeter {
  private readonly samples: { t: number; v: number }[] = [];

  constructor(private readonly windowMs = 10_000) {}

  add(t: number, value: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last !== undefined && value < last.v) this.samples.length = 0; // counting started again
    if (last !== undefined && last.t === t) last.v = value;
    else this.samples.push({ t, v: value });
    // Keep one sample older than the window, so that the window is always spanned.
    while (this.samples.length > 2 && this.samples[1]!.t <= t - this.windowMs) this.samples.shift();
  }

  reset(): void {
    this.samples.length = 0;
  }

  /** Bytes a second over the window, once it spans at least half a second; undefined before. */
  rate(now: number): number | undefined {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined) return undefined;
    const span = Math.max(now, last.t) - first.t;
    if (span < 500) return undefined;
    return ((last.v - first.v) * 1000) / span;
  }
}

/** "1,234 of 3,000 files, 120 of 288 MiB (41%), 41.2 MiB/s, ETA 0:04" (as much of it as is known). */
export function countsText(
  job: Pick<JobProgress, 'files' | 'bytes' | 'totalFiles' | 'totalBytes'>,
  rate: number | undefined,
  brief = false,
): string {
  const parts: string[] = [];
  // Brief (a narrow terminal): the files' count goes first, the bytes, rate and ETA stay.
  if (job.files !== undefined && !(brief && job.bytes !== undefined)) {
    const total = job.totalFiles !== undefined && job.totalFiles >= job.files ? job.totalFiles : undefined;
    parts.push(
      `${formatCount(job.files)}${total !== undefined ? ` of ${formatCount(total)}` : ''} file${(total ?? job.files) === 1 ? '' : 's'}`,
    );
  }
  if (job.bytes !== undefined) {
    const total = job.totalBytes !== undefined && job.totalBytes >= job.bytes ? job.totalBytes : undefined;
    if (total === undefined) parts.push(formatBytes(job.bytes));
    else {
      const done = formatBytes(job.bytes);
      const all = formatBytes(total);
      // "120 of 288 MiB" when both are in the same unit, "512 KiB of 1.20 GiB" when not.
      const [number, unit] = done.split(' ');
      const same = all.endsWith(` ${unit}`);
      const percent = total > 0 ? ` (${Math.floor((job.bytes * 100) / total)}%)` : '';
      parts.push(`${same ? number : done} of ${all}${percent}`);
    }
    parts.push(formatRate(rate));
    const left = eta(job.bytes, total, rate);
    if (left !== undefined) parts.push(`ETA ${formatDuration(left)}`);
  }
  return parts.join(', ');
}

/**
 * What the job does now, in a few words: "waiting for a quiet period since 10:41:02 (1:12)",
 * "migrate/copy (0:03): …". Level 1 leaves out the clock and the step's time, level 2 the files' count too.
 */
export function activityText(job: JobProgress, now: number, rate: number | undefined, level = 0): string {
  const note = job.note !== undefined ? `; ${job.note}` : '';
  if (job.waiting !== undefined) {
    const since = level > 0 ? '' : ` since ${clockTime(job.waiting.since)}`;
    return `waiting for ${job.waiting.reason}${since} (${formatDuration((now - job.waiting.since) / 1000)})${note}`;
  }
  const what = job.step ?? job.phase;
  const since = job.step !== undefined && level === 0 ? ` (${formatDuration((now - job.stepSince) / 1000)})` : '';
  const counts = job.files !== undefined || job.bytes !== undefined ? `: ${countsText(job, rate, level > 1)}` : '';
  return `${what}${since}${counts}${note}`;
}

/** A name cut in its middle to `width` characters ("run-2026-…-final"). */
function shortName(name: string, width: number): string {
  const chars = [...name];
  if (chars.length <= width) return name;
  const head = Math.ceil((width - 1) / 2);
  return `${chars.slice(0, head).join('')}…${chars.slice(chars.length - (width - 1 - head)).join('')}`;
}

/** The shortest a name is cut to before the line's other parts are. */
const MIN_NAME = 12;

/**
 * One live line: the directory's name, then what it does now; within `columns`, the name is
 * shortened and the other parts left out (clock, step time, files) before the rate and ETA are.
 */
export function jobLine(job: JobProgress, now: number, rate: number | undefined, columns = Infinity): string {
  const width = Math.max(10, columns - 1);
  const name = oneLineText(job.name);
  let line = '';
  for (let level = 0; level <= 2; level++) {
    const activity = activityText(job, now, rate, level);
    line = `${name}: ${activity}`;
    if ([...line].length <= width) return line;
    const room = width - [...activity].length - 2;
    line = `${shortName(name, Math.max(MIN_NAME, room))}: ${activity}`;
    if (room >= MIN_NAME) return line;
  }
  return line;
}

/** Cuts a line to `columns` characters (so that it never wraps and can be erased), marking the cut with "…". */
export function fitLine(line: string, columns: number): string {
  const width = Math.max(10, columns - 1);
  const chars = [...line];
  return chars.length <= width ? line : `${chars.slice(0, width - 1).join('')}…`;
}
