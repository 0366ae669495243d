/** recover: finish (after the commit) or undo (before it) every interrupted job of every root. */
import type { App } from '../app.js';
import type { Outcome, RootEngine, Survey } from '../core/index.js';

export interface RecoveryResult {
  readonly rootdir: string;
  readonly name: string;
  readonly outcome: Outcome;
}

/**
 * Interrupted jobs of one root: the journal's, and leftovers found on disk without one.
 * Give the root's `survey` when you have a fresh one (it saves a listing of the filesystems).
 * A job whose lock is held (running in this or another process) comes back 'busy' and is left alone.
 */
export async function recoverRoot(engine: RootEngine, signal?: AbortSignal, survey?: Survey): Promise<RecoveryResult[]> {
  const results: RecoveryResult[] = [];
  const records = await engine.journal.list(engine.context.rootdir);
  const known = new Set(records.map((r) => r.name));
  const { leftovers } = survey ?? (await engine.survey());
  for (const name of leftovers) if (!known.has(name)) records.push(engine.orphanRecord(name));
  for (const record of records) {
    if (signal?.aborted) break;
    const outcome = await engine.recover(record, { signal, lockWaitMs: 0 });
    results.push({ rootdir: engine.context.rootdir, name: record.name, outcome });
  }
  return results;
}

export async function recover(app: App, options: { json: boolean }): Promise<number> {
  const results: RecoveryResult[] = [];
  for (const engine of app.engines) results.push(...(await recoverRoot(engine)));
  if (options.json) {
    process.stdout.write(`${JSON.stringify(results.map((r) => ({ rootdir: r.rootdir, name: r.name, outcome: r.outcome.kind, message: r.outcome.message })), null, 2)}\n`);
  } else if (results.length === 0) {
    process.stdout.write('nothing to recover\n');
  } else {
    for (const r of results) process.stdout.write(`${r.outcome.kind.padEnd(11)} ${JSON.stringify(`${r.rootdir}/${r.name}`)}: ${r.outcome.message}\n`);
  }
  return results.some((r) => r.outcome.kind === 'failed') ? 1 : 0;
}
