/** list-plugins: for each root, every plugin, its source, version and the hooks it taps, in lifecycle order. */
import type { App } from '../app.js';
import { jsonText } from './envelope.js';

export async function listPlugins(app: App, options: { json: boolean }): Promise<number> {
  const roots = app.engines.map((engine) => ({
    rootfs: engine.context.rootfs,
    rootdir: engine.context.rootdir,
    plugins: engine.plugins.map((p) => ({ name: p.name, source: p.source, version: p.version, location: p.location, hooks: p.taps })),
  }));
  if (options.json) {
    process.stdout.write(jsonText('list-plugins', { config: app.config.source, roots }));
    return 0;
  }
  const lines = [`config: ${app.config.source}`];
  for (const root of roots) {
    lines.push('', `${root.rootdir}  (${root.rootfs})`);
    const width = Math.max(...root.plugins.map((p) => p.name.length));
    for (const p of root.plugins) {
      lines.push(`  ${p.name.padEnd(width)}  ${p.source.padEnd(7)}  ${p.version.padEnd(8)}  ${p.hooks.join(', ')}`);
      if (p.source !== 'builtin') lines.push(`  ${''.padEnd(width)}  from ${p.location}`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
