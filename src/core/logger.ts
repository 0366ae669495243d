/**
 * The logger: every record goes to hooks.log (syslog and friends) and, unless quiet, to stderr.
 *
 * Stderr has two forms. When it is the systemd journal (the JOURNAL_STREAM the service manager
 * sets names the device and inode of fd 2), each line starts with the sd-daemon priority prefix
 * (`<6>INFO: …`, see sd-daemon(3)) and carries no timestamp and no program name: journald adds
 * both. Anywhere else each line starts with the local time, ISO 8601 with its UTC offset
 * (`2026-11-27T09:01:02.123+01:00 zfs-dynamic-creator: INFO: …`).
 *
 * A closed stderr (a pipe whose reader went away: `| head -1`, a dropped ssh session) never
 * interrupts anything: write errors on stderr and stdout are ignored, and the other sinks
 * (syslog) go on receiving every record.
 */
import { fstatSync } from 'node:fs';
import type { LogFields, LogLevel, LogRecord, Logger } from './types.js';

export type LogSink = (record: LogRecord) => void;

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, notice: 2, warning: 3, error: 4 };

/** The sd-daemon / syslog priority of each level. */
export const JOURNAL_PRIORITY: Readonly<Record<LogLevel, number>> = { debug: 7, info: 6, notice: 5, warning: 4, error: 3 };

export const PROGRAM = 'zfs-dynamic-creator';

export interface StderrOptions {
  quiet: boolean;
  verbose: boolean;
  /** Stderr is the journal (default: detected from JOURNAL_STREAM, see stderrIsJournal). */
  journal?: boolean;
}

/** Escapes control characters so that one record is one line whatever a name holds. */
export function oneLineText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) =>
    c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

export function formatRecord(record: LogRecord): string {
  const who = record.plugin !== undefined ? ` [${record.plugin}]` : '';
  const where = record.dir !== undefined ? ` [${record.dir}]` : '';
  return oneLineText(`${record.level.toUpperCase()}:${who}${where} ${record.message}`);
}

/**
 * Whether file descriptor `fd` (stderr by default) is the systemd journal: systemd sets
 * JOURNAL_STREAM to "<device>:<inode>" of the stream it connects stdout and stderr to. A
 * redirected stderr (`2>file` in ExecStart's shell, a pipe) no longer matches, so the variable
 * alone, inherited by a child whose stderr is elsewhere, is not enough.
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env, fd = 2): boolean {
  const stream = env.JOURNAL_STREAM;
  if (stream === undefined) return false;
  const match = /^(\d+):(\d+)$/.exec(stream.trim());
  if (!match) return false;
  try {
    const stats = fstatSync(fd, { bigint: true });
    return stats.dev === BigInt(match[1]!) && stats.ino === BigInt(match[2]!);
  } catch {
    return false;
  }
}

let journalCache: boolean | undefined;
/** stderrIsJournal() for this process, worked out once. */
export function journalIsStderr(): boolean {
  journalCache ??= stderrIsJournal();
  return journalCache;
}

/**
 * The one human timestamp (log lines, status, history, doctor): the system's local time in ISO
 * 8601 with its UTC offset, 2026-11-27T09:01:02+01:00 (with milliseconds for log lines). JSON
 * keeps UTC. A text that is not a time is returned as it is.
 */
export function humanTime(when: Date | number | string, precision: 's' | 'ms' = 's'): string {
  const date = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(date.getTime())) return String(when);
  const pad = (n: number, width = 2): string => String(Math.trunc(Math.abs(n))).padStart(width, '0');
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const ms = precision === 'ms' ? `.${pad(date.getMilliseconds(), 3)}` : '';
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${ms}` +
    `${sign}${pad(offset / 60)}:${pad(offset % 60)}`
  );
}

/** A log line's time: humanTime with milliseconds, 2026-11-27T09:01:02.123+01:00. */
export function localTimestamp(date: Date): string {
  return humanTime(date, 'ms');
}

/**
 * One stderr line for a message at `level` (text already on one line), without the newline:
 * `<N>LEVEL: text` for the journal, `<time> zfs-dynamic-creator: LEVEL: text` elsewhere.
 */
export function stderrLine(level: LogLevel, text: string, options: { journal: boolean; time?: Date }): string {
  const body = `${level.toUpperCase()}: ${text}`;
  return options.journal ? `<${JOURNAL_PRIORITY[level]}>${body}` : `${localTimestamp(options.time ?? new Date())} ${PROGRAM}: ${body}`;
}

let guarded = false;
/**
 * Makes a closed stderr or stdout harmless for the rest of the process: a write error (EPIPE
 * when the reader went away) is ignored instead of becoming an uncaught 'error' event that
 * ends the process in the middle of a job. Idempotent.
 */
export function ignoreBrokenPipes(): void {
  if (guarded) return;
  guarded = true;
  for (const stream of [process.stderr, process.stdout]) stream.on('error', () => undefined);
}

/**
 * Something drawn below the log on a terminal (the live progress lines): every write to stderr
 * first erases it and then draws it again, in one write, so that log lines scroll above it.
 */
export interface StderrOverlay {
  /** What erases the overlay as last drawn (and forgets it was drawn). */
  erase(): string;
  /** What draws it now (no final newline), or ''. */
  draw(): string;
}

let overlay: StderrOverlay | undefined;
/** Puts an overlay under the log (or removes it, erased, with undefined). */
export function setStderrOverlay(next: StderrOverlay | undefined): void {
  const erase = overlay?.erase() ?? '';
  overlay = next;
  if (erase !== '') writeStderr(erase);
}

/** Writes to stderr; a failed write (a closed pipe) is ignored. */
export function writeStderr(text: string): void {
  ignoreBrokenPipes();
  try {
    if (overlay) text = `${overlay.erase()}${text}${overlay.draw()}`;
    if (text === '') return;
    if (!process.stderr.destroyed && process.stderr.writable) process.stderr.write(text);
  } catch {
    // a closed stderr must never interrupt a job
  }
}

/** Writes to stdout; a failed write (a closed pipe) is ignored. */
export function writeStdout(text: string): void {
  ignoreBrokenPipes();
  // On the same terminal as the overlay: out of its way first, drawn again after.
  const aside = overlay !== undefined && process.stdout.isTTY === true;
  if (aside) writeRaw(process.stderr, overlay!.erase());
  writeRaw(process.stdout, text);
  if (aside) writeStderr('');
}

function writeRaw(stream: NodeJS.WriteStream, text: string): void {
  try {
    if (text !== '' && !stream.destroyed && stream.writable) stream.write(text);
  } catch {
    // the reader went away: nothing more to say to it
  }
}

/** Logs one line to stderr the way the stderr sink does, for messages outside a logger (the CLI's own). */
export function logToStderr(level: LogLevel, text: string): void {
  writeStderr(`${stderrLine(level, oneLineText(text), { journal: journalIsStderr() })}\n`);
}

/** Records the stderr sink wrote to the journal (so that a syslog sink need not send them again). */
const journalled = new WeakSet<LogRecord>();

/**
 * Whether this record already reached the systemd journal through stderr. Sinks run before
 * hooks.log, so a plugin tapping hooks.log (syslog) can tell: on a systemd machine /dev/log is
 * journald's own socket, and sending the record there too would put it in the journal twice.
 */
export function inJournal(record: LogRecord): boolean {
  return journalled.has(record);
}

export function stderrSink(options: StderrOptions): LogSink {
  const min = options.verbose ? RANK.debug : RANK.info;
  const journal = options.journal ?? journalIsStderr();
  ignoreBrokenPipes();
  return (record) => {
    if (options.quiet && RANK[record.level] < RANK.error) return;
    if (RANK[record.level] < min) return;
    const rest = formatRecord(record).slice(record.level.length + 2);
    writeStderr(`${stderrLine(record.level, rest, { journal, time: record.time })}\n`);
    if (journal) journalled.add(record);
  };
}

export function createLogger(sinks: readonly LogSink[], fields: LogFields = {}): Logger {
  const emit = (level: LogLevel, message: string, extra?: LogFields): void => {
    const record: LogRecord = { ...fields, ...extra, level, message, time: new Date() };
    for (const sink of sinks) {
      try {
        sink(record);
      } catch {
        // a broken log sink must never break a job
      }
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    notice: (m, f) => emit('notice', m, f),
    warn: (m, f) => emit('warning', m, f),
    error: (m, f) => emit('error', m, f),
    child: (more) => createLogger(sinks, { ...fields, ...more }),
  };
}

/** Runtime warnings by kind (name and code), as many as Node emitted. */
const warningCounts = new Map<string, number>();
/** Where the first warning of each kind goes (set once a program's log exists), and those met before. */
let warningLog: Logger | undefined;
const pendingWarnings: string[] = [];
let warningLevel: LogLevel = 'debug';

/**
 * Node's runtime warnings (a MaxListenersExceededWarning, a deprecation) go through the program's
 * log instead of Node's own stderr line: the first of each kind at `level` (debug: seen with -v;
 * error: with -q too, for tests), the later ones only counted. For the program's entry (the bin),
 * never for a library: Node's own printer is taken off.
 */
export function routeProcessWarnings(level: LogLevel = 'debug'): void {
  warningLevel = level;
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    const kind = `${warning.name}${warning.code !== undefined ? ` ${warning.code}` : ''}`;
    const seen = (warningCounts.get(kind) ?? 0) + 1;
    warningCounts.set(kind, seen);
    if (seen > 1) return;
    const text = `runtime warning (${kind}): ${warning.message}; later ones of this kind are counted, not logged`;
    if (warningLog) logAt(warningLog, warningLevel, text);
    else if (warningLevel === 'error') logToStderr('error', text);
    else pendingWarnings.push(text);
  });
}

/** The log runtime warnings go to from now on (those met before it are logged to it first). */
export function setWarningLog(log: Logger): void {
  warningLog = log;
  for (const text of pendingWarnings.splice(0)) logAt(log, warningLevel, text);
}

/** How many runtime warnings of each kind this process met. */
export function processWarningCounts(): ReadonlyMap<string, number> {
  return warningCounts;
}

function logAt(log: Logger, level: LogLevel, text: string): void {
  (level === 'warning' ? log.warn : log[level])(text);
}
