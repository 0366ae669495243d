/** recover: finish (after the commit) or undo (before it) every interrupted job of every root. */
import type { App } from '../app.js';
import { writeStdout, type RecoveryResult, type RootEngine, type Survey } from '../core/index.js';
import { jsonText } from './envelope.js';
import { outcomeLabel } from './reconcile.js';

export type { RecoveryResult };

/** Interrupted jobs of one root (see RootEngine.recoverRoot). */
export function recoverRoot(engine: RootEngine, signal?: AbortSignal, survey?: Survey): Promise<RecoveryResult[]> {
  return engine.recoverRoot(signal, survey);
}

export async function recover(app: App, options: { json: boolean }): Promise<number> {
  const results: RecoveryResult[] = [];
  for (const engine of app.engines) results.push(...(await recoverRoot(engine)));
  const dryRun = app.engines.some((e) => e.context.dryRun);
  if (options.json) {
    writeStdout(jsonText('recover', { config: app.config.source, results: results.map((r) => ({ rootdir: r.rootdir, name: r.name, outcome: r.outcome.kind, message: r.outcome.message })) }));
  } else if (results.length === 0) {
    writeStdout('nothing to recover\n');
  } else {
    for (const r of results) writeStdout(`${outcomeLabel(r.outcome.kind, dryRun).padEnd(11)} ${JSON.stringify(`${r.rootdir}/${r.name}`)}: ${r.outcome.message}\n`);
  }
  return results.some((r) => r.outcome.kind === 'failed') ? 1 : 0;
}
