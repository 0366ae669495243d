/**
 * Every external command goes through here: execa with an argument array,
 * never a shell. A missing binary becomes a one-line error that says so.
 */
import type { Options } from 'execa';

/** execa, loaded on first use: a run that never starts a command does not pay for it. */
const loadExeca = async (): Promise<typeof import('execa').execa> => (await import('execa')).execa;
import { RefusedError } from './errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    const detail = stderr.trim().split('\n').filter(Boolean).slice(-1)[0] ?? `exit code ${exitCode}`;
    super(`${command} failed (exit ${exitCode}): ${detail}`);
  }
}

export interface RunOptions {
  /** Exit codes that are not failures. */
  okExitCodes?: readonly number[];
  input?: string;
  env?: Record<string, string>;
  signal?: AbortSignal;
  timeoutMs?: number;
  /**
   * Each line of stdout as it comes (without its newline), instead of collecting it: the result's
   * stdout is then ''. For commands that report as they go (rsync --out-format).
   */
  onStdoutLine?: (line: string) => void;
  /** Called with the process id once the command has started (to watch it: /proc/<pid>). */
  onSpawn?: (pid: number) => void;
}

export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const ok = options.okExitCodes ?? [0];
  const onLine = options.onStdoutLine;
  const execaOptions: Options = {
    reject: false,
    stripFinalNewline: false,
    input: options.input,
    env: options.env,
    cancelSignal: options.signal,
    timeout: options.timeoutMs,
    stdin: options.input === undefined ? 'ignore' : undefined,
    encoding: 'utf8',
    // An execa transform that passes nothing on: each line is handed over, none is kept.
    ...(onLine !== undefined
      ? {
          stdout: function* (line: unknown) {
            onLine(String(line));
            yield* [];
          },
        }
      : {}),
  };
  const subprocess = (await loadExeca())(command, [...args], execaOptions);
  if (subprocess.pid !== undefined) options.onSpawn?.(subprocess.pid);
  const result = await subprocess;
  const code = (result as { code?: string }).code;
  if (code === 'ENOENT') {
    throw new RefusedError(`${command} not found: install it or put it on PATH`);
  }
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  const exitCode = result.exitCode ?? -1;
  if (!ok.includes(exitCode)) {
    if (result.isCanceled) throw new Error(`${command} was cancelled`);
    if (result.timedOut) throw new Error(`${command} timed out`);
    throw new CommandError(command, args, exitCode, stderr, stdout);
  }
  return { stdout, stderr, exitCode };
}
