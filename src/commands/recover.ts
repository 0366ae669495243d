/** recover: finish (after the commit) or undo (before it) every interrupted job of every root. */
import type { App } from '../app.js';
import { RootGoneError, oneLine, writeStdout, type RecoveryResult, type RootEngine, type Survey } from '../core/index.js';
import { jsonText } from './envelope.js';
import { outcomeLabel } from './reconcile.js';

export type { RecoveryResult };

/** Interrupted jobs of one root (see RootEngine.recoverRoot). */
export function recoverRoot(engine: RootEngine, signal?: AbortSignal, survey?: Survey): Promise<RecoveryResult[]> {
  return engine.recoverRoot(signal, survey);
}

/** A root recover found gone: its jobs wait; `newly`: this run is the first to meet it. */
export interface GoneRoot {
  readonly rootdir: string;
  readonly rootfs: string;
  readonly line: string;
  readonly newly: boolean;
}

/**
 * Exit status: 1 when a job failed, or when a root is gone and this run is the first to meet it
 * (the operator is told once: by the failing run); 0 when the only thing left is the jobs of a
 * root already reported gone, which wait until it is back (a timer must not fail for good
 * because a pool was destroyed). Every run prints the gone root's line; status and doctor show it.
 */
export async function recover(app: App, options: { json: boolean; summary?: boolean }): Promise<number> {
  const results: RecoveryResult[] = [];
  const gone: GoneRoot[] = [];
  /** Roots that could not be worked on for another reason (claimed by another stateDir, say). */
  const refused: { rootdir: string; message: string }[] = [];
  for (const engine of app.engines) {
    try {
      results.push(...(await recoverRoot(engine)));
    } catch (error) {
      if (!(error instanceof RootGoneError)) {
        engine.log.error(oneLine(error), { step: 'recover' });
        refused.push({ rootdir: engine.context.rootdir, message: oneLine(error) });
        continue;
      }
      const report = await engine.goneReport(error);
      (report.newly ? engine.log.error : engine.log.info).call(engine.log, report.line, { step: 'recover' });
      gone.push({ rootdir: engine.context.rootdir, rootfs: engine.context.rootfs, ...report });
    }
  }
  const dryRun = app.engines.some((e) => e.context.dryRun);
  if (options.json) {
    writeStdout(
      jsonText('recover', {
        config: app.config.source,
        results: results.map((r) => ({ rootdir: r.rootdir, name: r.name, outcome: r.outcome.kind, message: r.outcome.message })),
        ...(gone.length > 0 ? { gone: gone.map((g) => ({ rootdir: g.rootdir, rootfs: g.rootfs, message: g.line, first: g.newly })) } : {}),
        ...(refused.length > 0 ? { refused } : {}),
      }),
    );
  } else {
    // --summary (cron, mail): the same lines, with the root in each, and nothing when there was nothing to do.
    if (results.length === 0 && gone.length === 0 && refused.length === 0 && !options.summary) writeStdout('nothing to recover\n');
    for (const r of results) writeStdout(`${outcomeLabel(r.outcome.kind, dryRun).padEnd(11)} ${JSON.stringify(`${r.rootdir}/${r.name}`)}: ${r.outcome.message}\n`);
    for (const g of gone) if (!options.summary || g.newly) writeStdout(`${'gone'.padEnd(11)} ${g.line}\n`);
    for (const r of refused) writeStdout(`${'failed'.padEnd(11)} ${JSON.stringify(r.rootdir)}: ${r.message}\n`);
  }
  return refused.length > 0 || results.some((r) => r.outcome.kind === 'failed') || gone.some((g) => g.newly) ? 1 : 0;
}
