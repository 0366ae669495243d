#!/usr/bin/env node
/**
 * The bin: `zfs-dynamic-creator …` (src/program.ts is the command line itself).
 *
 * It imports only the compile cache's small module first: the cache (Node 22.1 and later, in a
 * root-only directory; util/compile-cache.ts) must be on before the program's bundle is loaded,
 * or it would not cover it.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { changesNothing, startCompileCache } from './util/compile-cache.js';

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  // A dry run or check-config changes nothing, not even the cache.
  if (!changesNothing(process.argv.slice(2))) startCompileCache();
  const { main, routeProcessWarnings } = await import('./program.js');
  // Node's runtime warnings go to the log at debug level (at error level when asked: tests).
  routeProcessWarnings(process.env.ZFS_DYNAMIC_CREATOR_WARNINGS === 'error' ? 'error' : 'debug');
  process.exitCode = await main(process.argv.slice(2));
}
