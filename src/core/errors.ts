/** Errors with a one-line message meant for the administrator. */

/**
 * Bad input or environment: refused before anything was changed (or everything was put back).
 * `permanent`: the refusal cannot change without a change to the directory (its name, its
 * entries) or to the config (a name ZFS forbids, over the quota, too big for the pool). Such a
 * refusal is remembered (src/core/refusals.ts): reported once, not retried until either changes.
 * Throw it as `new RefusedError(message, { permanent: true })`.
 */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
  readonly permanent: boolean;

  constructor(message: string, options: { permanent?: boolean; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.permanent = options.permanent ?? false;
  }
}

/** Whether `error` (or an error it wraps as its cause) is a permanent refusal. */
export function isPermanentRefusal(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof RefusedError && e.permanent) return true;
  }
  return false;
}

/** A failure that may pass if tried again (a busy dataset, a vanished file). */
export class TransientError extends Error {
  override readonly name = 'TransientError';
}

/** The configuration is wrong; the message names the file and the key. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The job is being handled by another process. */
export class BusyError extends Error {
  override readonly name = 'BusyError';
}

/**
 * A plugin broke the lifecycle's contract (src/core/contract.ts): a tap returned something of the
 * wrong shape, recorded a job field in a phase that does not set it, wrote another plugin's data.
 * The message names the plugin.
 */
export class ContractError extends Error {
  override readonly name = 'ContractError';
}

/** The first line of an error's message, for one-line reports. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.split('\n').map((l) => l.trim()).find((l) => l.length > 0) ?? 'unknown error';
  return line.length > 1000 ? `${line.slice(0, 1000)}…` : line;
}

/** Shows a name safely in one line: control characters and newlines escaped. */
export function quoteName(name: string): string {
  return JSON.stringify(name);
}
