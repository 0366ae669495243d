/** Errors with a one-line message meant for the administrator. */

/**
 * Bad input or environment: refused before anything was changed (or everything was put back).
 * `permanent`: the refusal cannot change without a change to the directory (its name, its
 * entries) or to the config (a name ZFS forbids, over the quota, too big for the pool). Such a
 * refusal is remembered (src/core/refusals.ts): reported once, not retried until either changes.
 * Throw it as `new RefusedError(message, { permanent: true })`.
 */
export class RefusedError extends Error {
  override readonly name: string = 'RefusedError';
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

/**
 * The configuration is wrong; the message names the file and the key. `problems`: every
 * mistake found, one line each (the message joins them), for check-config to list.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];

  constructor(message: string, problems?: readonly string[]) {
    super(problems && problems.length > 1 ? problems.join('; ') : message);
    this.problems = problems && problems.length > 0 ? problems : [message];
  }
}

/**
 * The candidate `word` was most likely meant to be (a mistyped key, option or command), if any:
 * the nearest within `allowed(candidate)` edits (a swap of two letters is one).
 */
export function didYouMean(
  word: string,
  candidates: readonly string[],
  allowed = (c: string): number => Math.max(2, Math.floor(c.length / 4)),
): string | undefined {
  const lower = word.toLowerCase();
  const same = candidates.find((c) => c.toLowerCase() === lower);
  if (same !== undefined) return same;
  let best: { word: string; d: number } | undefined;
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase());
    if (d <= allowed(c) && (best === undefined || d < best.d)) best = { word: c, d };
  }
  return best?.word;
}

/** Edits (insert, delete, replace, or swap two neighbours) from `a` to `b`. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** One line for a mistyped key, config and plugin options alike. */
export function unknownKey(where: string, key: string, known: readonly string[]): string {
  const near = didYouMean(key, known);
  return `${where}: unknown key ${JSON.stringify(key)}${near !== undefined ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`;
}

/**
 * A failure whose message already says where the job's things are (the original kept at ...) and
 * what to do next (then run 'zfs-dynamic-creator recover'): the engine's report of it adds only
 * that nothing is undone, never its own advice again. Its kind, not its words, says so. To keep
 * another error's kind as well, give that error as its `cause`.
 */
export class AdvisedError extends Error {
  override readonly name = 'AdvisedError';
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
  const line =
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? 'unknown error';
  return line.length > 1000 ? `${line.slice(0, 1000)}…` : line;
}

/** Shows a name safely in one line: control characters and newlines escaped. */
export function quoteName(name: string): string {
  return JSON.stringify(name);
}
