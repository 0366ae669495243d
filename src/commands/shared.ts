/**
 * What the commands share: exit codes, the CLI's own one-line messages, a run with an App, and
 * the nearest command name for "did you mean".
 */
import { App, type GlobalOptions } from '../app.js';
import { stopOnSignals } from '../core/stop.js';
import {
  ConfigError,
  JOURNAL_PRIORITY,
  didYouMean,
  journalIsStderr,
  logToStderr,
  oneLineText,
  writeStderr,
  type LogLevel,
  type Outcome,
} from '../core/index.js';

/** Exit codes. */
export const EXIT = { ok: 0, failed: 1, usage: 2, deferred: 75 } as const;

export function exitCodeFor(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'failed':
      return EXIT.failed;
    case 'refused':
      // Said and remembered by an earlier run: not a failure of this one.
      return outcome.remembered ? EXIT.ok : EXIT.failed;
    case 'deferred':
    case 'waiting':
      return EXIT.deferred;
    default:
      return EXIT.ok;
  }
}

/** A usage error: exit 2. */
export class UsageError extends ConfigError {}

/** The CLI's own one-line message (a usage error, a job's reason): `zfs-dynamic-creator: …`, or `<N>…` for the journal. */
export function say(level: LogLevel, text: string): void {
  writeStderr(journalIsStderr() ? `<${JOURNAL_PRIORITY[level]}>${oneLineText(text)}\n` : `zfs-dynamic-creator: ${oneLineText(text)}\n`);
}

/** A job's exit code, its reason said when it is not 0. */
export function report(outcome: Outcome): number {
  const code = exitCodeFor(outcome);
  if (code !== EXIT.ok) say(outcome.kind === 'failed' || outcome.kind === 'refused' ? 'error' : 'notice', outcome.message);
  return code;
}

/**
 * SIGTERM or SIGINT asks a running job to stop safely: waits give up (the
 * directory stays as it is), a copy before the commit is cancelled and rolled
 * back, a job past the commit is left for recovery. A second signal exits at once.
 */
export function stopSafely(): AbortSignal {
  return stopOnSignals({ say: (signal) => logToStderr('notice', `${signal}: stopping safely`), again: 'exit' }).signal;
}

/**
 * Leaves the working directory for / once the paths of the command line are
 * resolved: nothing is read from it, and it is often a directory a user owns,
 * which the job may move aside (every command run later would then start in a
 * directory that is gone, or is the user's).
 */
export function leaveWorkingDirectory(): void {
  process.chdir('/');
}

/** Runs `body` with an app, closing it whatever happens; returns the exit code. */
export async function withApp(
  options: GlobalOptions,
  body: (app: App) => Promise<number>,
  given?: Parameters<typeof App.open>[1],
): Promise<number> {
  leaveWorkingDirectory();
  const app = await App.open(options, given);
  try {
    return await body(app);
  } finally {
    await app.close();
  }
}

export const SUMMARY_HELP =
  'for cron and mail: one line per job that is news ("<outcome> "<dir>": <message>"), nothing when nothing happened; logs as with -q';

/** --summary: logs as with -q (errors only); not with --json. */
export function summaryOptions(options: GlobalOptions, o: { json?: boolean; summary?: boolean }): GlobalOptions {
  if (o.summary && o.json) throw new UsageError('usage: give --summary or --json, not both');
  return o.summary ? { ...options, quiet: true } : options;
}

/** The command `word` is probably a misspelling of (one edit for short names, two for longer ones), if any. */
export function closestCommand(word: string, commands: readonly string[]): string | undefined {
  return didYouMean(word, commands, (name) => (name.length <= 5 ? 1 : 2));
}
