/**
 * syslog: every log record to syslog through /dev/log, one line per event,
 * naming the directory, the dataset and the step. One long-lived `logger`
 * process (util-linux) takes the lines with their priorities on its standard
 * input, so a run costs one process, not one per line.
 *
 * Under systemd, stderr is the journal and /dev/log is journald's own socket: a record sent to
 * both would be in the journal twice. So, by default (`journal: skip`), a record the stderr sink
 * already wrote to the journal is not sent here; journald passes it on to the syslog daemon
 * (rsyslog's imjournal, or ForwardToSyslog=), so syslog still sees every line once. Records that
 * did not reach the journal (below stderr's level, -q) are sent as usual. `journal: send` sends
 * everything regardless (for a socket that is not journald's, e.g. a remote syslog relay).
 */
import { execa, type ResultPromise } from 'execa';
import * as z from 'zod';
import { definePlugin, inJournal, logToStderr, oneLineText, type LogLevel, type LogRecord } from '../../src/index.js';
import { syslogDoctor } from './doctor.js';

const NAME = 'syslog';

const FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;
const SEVERITIES = { emerg: 0, alert: 1, crit: 2, err: 3, warning: 4, notice: 5, info: 6, debug: 7 } as const;
type Severity = keyof typeof SEVERITIES;
const severity = z.enum(Object.keys(SEVERITIES) as [Severity, ...Severity[]]);

const options = z
  .object({
    facility: z.enum(Object.keys(FACILITIES) as [keyof typeof FACILITIES, ...(keyof typeof FACILITIES)[]]).default('daemon'),
    tag: z
      .string()
      .regex(/^[^\s[\]:]{1,48}$/, 'a tag without spaces, brackets or colons')
      .default('zfs-dynamic-creator'),
    /** The syslog socket. */
    socket: z.string().startsWith('/').default('/dev/log'),
    /** The lowest level sent. */
    level: z.enum(['debug', 'info', 'notice', 'warning', 'error']).default('info'),
    /** The syslog severity for each level. */
    severities: z
      .object({
        debug: severity.default('debug'),
        info: severity.default('info'),
        notice: severity.default('notice'),
        warning: severity.default('warning'),
        error: severity.default('err'),
      })
      .strict()
      .default({ debug: 'debug', info: 'info', notice: 'notice', warning: 'warning', error: 'err' }),
    command: z.string().min(1).default('logger'),
    /** What to do with a record that already reached the systemd journal through stderr. */
    journal: z.enum(['skip', 'send']).default('skip'),
  })
  .strict();

type Options = z.infer<typeof options>;
const RANK: Record<LogLevel, number> = { debug: 0, info: 1, notice: 2, warning: 3, error: 4 };

/** The text of one syslog line: "<dir> (<dataset>) <step>: [<plugin>] <message>". */
export function syslogLine(record: LogRecord): string {
  const parts: string[] = [];
  if (record.rootdir !== undefined && record.dir !== undefined) parts.push(`${record.rootdir}/${record.dir}`);
  else if (record.rootdir !== undefined) parts.push(record.rootdir);
  if (record.filesystem !== undefined) parts.push(`(${record.filesystem})`);
  if (record.step !== undefined) parts.push(record.step);
  const head = parts.join(' ');
  const message = record.plugin !== undefined ? `[${record.plugin}] ${record.message}` : record.message;
  return oneLineText(head ? `${head}: ${message}` : message);
}

export default definePlugin<Options>({
  name: NAME,
  description: 'sends every step and outcome to syslog',
  options,
  apply(hooks, { options: opts }) {
    hooks.doctor.tapPromise(NAME, (checks, doctor) => syslogDoctor(checks, doctor, opts));
    let child: ResultPromise | undefined;
    let broken = false;
    const start = (): ResultPromise | undefined => {
      if (child || broken) return child;
      child = execa(opts.command, ['--prio-prefix', '-t', opts.tag, '-u', opts.socket], {
        stdin: 'pipe',
        stdout: 'ignore',
        // Not inherited: logger's complaints go through our own stderr writer, which a closed
        // stderr cannot break (an inherited closed pipe would kill logger with SIGPIPE).
        stderr: 'pipe',
        reject: false,
      });
      child.catch(() => undefined);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        for (const line of chunk.split('\n').filter(Boolean)) logToStderr('warning', `[${NAME}] ${opts.command}: ${line}`);
      });
      child.stdin?.on('error', () => {
        broken = true;
      });
      void child.then((r) => {
        if ((r as { code?: string }).code === 'ENOENT') broken = true;
      });
      return child;
    };

    hooks.log.tap(NAME, (record) => {
      if (RANK[record.level] < RANK[opts.level]) return;
      if (opts.journal === 'skip' && inJournal(record)) return;
      const proc = start();
      if (!proc?.stdin?.writable) return;
      const pri = FACILITIES[opts.facility] * 8 + SEVERITIES[opts.severities[record.level]];
      proc.stdin.write(`<${pri}>${syslogLine(record)}\n`);
    });

    hooks.close.tapPromise(NAME, async () => {
      const proc = child;
      child = undefined;
      if (!proc) return;
      proc.stdin?.end();
      await proc;
    });
  },
});
