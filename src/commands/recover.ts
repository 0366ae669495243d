/** recover: finish (after the commit) or undo (before it) every interrupted job of every root. */
import { App, DEFAULT_PLUGINS, type GlobalOptions } from '../app.js';
import {
  DEFAULT_STATE_DIR,
  RootGoneError,
  loadConfig,
  logToStderr,
  oneLine,
  writeStdout,
  type Config,
  type RecoveryResult,
} from '../core/index.js';
import { jsonText } from './envelope.js';
import { outcomeLabel } from './reconcile.js';
import { EXIT, withApp } from './shared.js';

/**
 * The command: the config's roots, and every root an interrupted job recorded in the journal
 * that the config does not list (one used only through the original command line), with its
 * plugins. Without a config, records whose root is not the one their id was made from are named
 * and left alone (exit 1).
 */
export async function recoverCommand(options: GlobalOptions, o: { json?: boolean; summary?: boolean }): Promise<number> {
  const file = await loadConfig(options.config, DEFAULT_PLUGINS);
  const stateDir = file?.stateDir ?? process.env.ZFS_DYNAMIC_CREATOR_STATE_DIR ?? DEFAULT_STATE_DIR;
  const untrusted = file === undefined ? await App.untrustedRecords(stateDir) : [];
  for (const line of untrusted) {
    logToStderr('error', line);
    if (!o.json) writeStdout(`${'failed'.padEnd(11)} ${line}\n`);
  }
  const given: Config | undefined = await App.fromJournal(stateDir, file);
  if (given === undefined) {
    if (untrusted.length === 0 && !o.summary)
      writeStdout(
        o.json
          ? jsonText('recover', { config: null, results: [] })
          : 'nothing to recover (no configuration, and no interrupted job in the journal)\n',
      );
    return untrusted.length > 0 ? EXIT.failed : EXIT.ok;
  }
  const code = await withApp(options, (app) => recover(app, { json: o.json ?? false, summary: o.summary ?? false }), given);
  return untrusted.length > 0 ? EXIT.failed : code;
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
      results.push(...(await engine.recoverRoot()));
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
    for (const r of results)
      writeStdout(`${outcomeLabel(r.outcome.kind, dryRun).padEnd(11)} ${JSON.stringify(`${r.rootdir}/${r.name}`)}: ${r.outcome.message}\n`);
    for (const g of gone) if (!options.summary || g.newly) writeStdout(`${'gone'.padEnd(11)} ${g.line}\n`);
    for (const r of refused) writeStdout(`${'failed'.padEnd(11)} ${JSON.stringify(r.rootdir)}: ${r.message}\n`);
  }
  return refused.length > 0 || results.some((r) => r.outcome.kind === 'failed') || gone.some((g) => g.newly) ? 1 : 0;
}
