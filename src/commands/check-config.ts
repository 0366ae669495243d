/** check-config: check the configuration and exit (what the systemd units run first). */
import { App, type GlobalOptions } from '../app.js';
import { writeStdout } from '../core/index.js';
import { jsonText } from './envelope.js';
import { optionLines, pluginRows } from './list-plugins.js';
import { EXIT, leaveWorkingDirectory, say } from './shared.js';

export async function checkConfig(globals: GlobalOptions, o: { options?: boolean; json?: boolean }): Promise<number> {
  // A dry run: nothing is created (not even the stateDir, nor a probe dataset), only checked.
  const options: GlobalOptions = { ...globals, dryRun: true };
  leaveWorkingDirectory();
  // Every static check doctor makes, all mistakes at once, one line each.
  const { Doctor } = await import('./doctor.js');
  const checks = await new Doctor(options, false).staticChecks();
  const problems = checks.filter((c) => c.status === 'fail').map((c) => c.detail);
  if (problems.length > 0 || o.json) {
    if (o.json) writeStdout(jsonText('check-config', { config: options.config ?? null, ok: problems.length === 0, problems }));
    else for (const problem of problems) say('error', problem);
    // A root's dataset not (yet) mounted is the machine's state, not the config's: exit 1, so
    // that a unit started before the pool is imported is started again.
    const configs = checks.filter((c) => c.status === 'fail' && !c.check.endsWith('.mount'));
    return configs.length > 0 ? EXIT.usage : problems.length > 0 ? EXIT.failed : EXIT.ok;
  }
  const app = await App.open(options);
  try {
    const roots = app.engines.map((e) => `${e.context.rootdir} (${e.context.rootfs}): ${e.plugins.map((p) => p.name).join(', ')}`);
    const effective = o.options ? pluginRows(app).map((root) => optionLines(root, '    ')) : [];
    writeStdout(
      `config ${app.config.source}: valid; stateDir ${app.config.stateDir}; ${roots.length} root(s)\n${roots.map((r, i) => `  ${r}\n${(effective[i] ?? []).map((l) => `${l}\n`).join('')}`).join('')}`,
    );
  } finally {
    await app.close();
  }
  return EXIT.ok;
}
