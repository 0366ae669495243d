/** The logger: every record goes to hooks.log (syslog and friends) and, unless quiet, to stderr. */
import type { LogFields, LogLevel, LogRecord, Logger } from './types.js';

export type LogSink = (record: LogRecord) => void;

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, notice: 2, warning: 3, error: 4 };

export interface StderrOptions {
  quiet: boolean;
  verbose: boolean;
}

/** Escapes control characters so that one record is one line whatever a name holds. */
export function oneLineText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

export function formatRecord(record: LogRecord): string {
  const who = record.plugin !== undefined ? ` [${record.plugin}]` : '';
  const where = record.dir !== undefined ? ` [${record.dir}]` : '';
  return oneLineText(`${record.level.toUpperCase()}:${who}${where} ${record.message}`);
}

export function stderrSink(options: StderrOptions): LogSink {
  const min = options.verbose ? RANK.debug : RANK.info;
  return (record) => {
    if (options.quiet && RANK[record.level] < RANK.error) return;
    if (RANK[record.level] < min) return;
    process.stderr.write(`zfs-dynamic-creator: ${formatRecord(record)}\n`);
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
