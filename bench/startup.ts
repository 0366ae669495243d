/**
 * Start-up of a run that rejects a name (the seed's 4-argument incron line, for a hidden
 * directory the name filter leaves alone) against `node -e 0`: medians of alternating runs.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, benchPool, median, timed, type Log } from './common.js';

export interface StartupResult {
  readonly tool: number;
  readonly node: number;
  readonly ratio: number;
  readonly runs: number;
}

export async function benchStartup(o: { runs: number; log: Log }): Promise<StartupResult> {
  const p = await benchPool('start', 256);
  try {
    const config = await p.config();
    mkdirSync(join(p.mount, '.hidden'));
    const tool: number[] = [];
    const node: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      const t = await timed(process.execPath, [CLI, '--config', config, p.pool, p.mount, '.hidden', 'IN_CREATE,IN_ISDIR']);
      if (t.exitCode !== 0) throw new Error(`the rejecting run exited ${t.exitCode}: ${t.stderr.slice(-300)}`);
      tool.push(t.seconds);
      node.push((await timed(process.execPath, ['-e', '0'])).seconds);
    }
    const result = { tool: median(tool), node: median(node), ratio: median(tool) / median(node), runs: o.runs };
    o.log(`  start-up: tool ${result.tool.toFixed(3)} s, node -e 0 ${result.node.toFixed(3)} s`);
    return result;
  } finally {
    await p.destroy();
  }
}
