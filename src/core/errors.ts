/** Errors with a one-line message meant for the administrator. */

/** Bad input or environment: refused before anything was changed. */
export class RefusedError extends Error {
  override readonly name: string = 'RefusedError';
}

/**
 * The root is not there: its rootdir is missing, or its filesystem does not exist or is not
 * mounted (pool exported or destroyed). Nothing of it was touched; its jobs wait in the journal
 * until it is back. Never stops the work of other roots.
 */
export class RootGoneError extends RefusedError {
  override readonly name = 'RootGoneError';
}

/**
 * The root is served by another instance of the tool (another stateDir): working on it would
 * adopt that instance's jobs and staging datasets. Nothing was changed.
 */
export class RootClaimedError extends RefusedError {
  override readonly name = 'RootClaimedError';
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

/**
 * A state file (a journal record, a job's copy manifest) that cannot be read as written: not a
 * crash's torn tail, which is dropped, but damage. `file` names it.
 */
export class DamagedStateError extends Error {
  override readonly name = 'DamagedStateError';
  constructor(
    readonly file: string,
    readonly detail: string,
    message = `${file} is damaged: ${detail}`,
  ) {
    super(message);
  }
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
