/**
 * Node's compile cache for the program's own start (Node 22.1 and later; Node 20 has none).
 *
 * A run that only rejects a name (the incron path: one process for every directory made in a
 * root) spends much of its time compiling the bundle. `module.enableCompileCache(dir)` keeps V8's
 * compiled code in `dir` and reuses it while the files are unchanged: measured with Node 22.23,
 * 92 ms -> 79 ms for such a run.
 *
 * Compiled code is code: whoever can write the cache can run code in the next run, as root. So
 * the cache is used only in a directory no other user can change: created 0700 when missing, and,
 * symbolic links resolved, it and every directory above it owned by root (or the user the tool
 * runs as) and not writable by group or others, and no link on the way owned by anyone else: the
 * rule of the config and the plugins (core/trust.ts). Node's own default (`NODE_COMPILE_CACHE` unset: no cache; the tmpdir when
 * asked without a directory) is never used. If the directory cannot be used, the program runs
 * without a cache, as on Node 20: it is only faster, never different.
 *
 *   ZFS_DYNAMIC_CREATOR_COMPILE_CACHE=<dir>   another directory (the same checks)
 *   ZFS_DYNAMIC_CREATOR_COMPILE_CACHE=off     no cache
 *   NODE_COMPILE_CACHE=<dir>                  Node's own setting, the administrator's choice, wins
 */
import nodeModule from 'node:module';
import { isAbsolute } from 'node:path';
import { quoteName } from '../core/errors.js';
import { prepareTrustedDir } from '../core/trust.js';

export const COMPILE_CACHE_DIR = '/var/cache/zfs-dynamic-creator/compile';
export const COMPILE_CACHE_ENV = 'ZFS_DYNAMIC_CREATOR_COMPILE_CACHE';

/** What Node 22.1+ offers (node:module); @types/node 20 does not describe it. */
export interface CompileCacheApi {
  enableCompileCache?: (directory?: string) => { status: number; message?: string; directory?: string };
}

/**
 * Whether a command line promises to change nothing (`--dry-run` anywhere before `--`, or
 * `check-config`): such a run neither creates the cache nor writes to it. Read from the words
 * alone, before the command line is parsed: a word that only looks like one (an option's value)
 * costs that run its cache, nothing else.
 */
export function changesNothing(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  const words = end >= 0 ? argv.slice(0, end) : argv;
  return words.includes('--dry-run') || words.includes('check-config');
}

export type CompileCacheResult = { readonly used: true; readonly directory: string } | { readonly used: false; readonly why: string };

/**
 * Turns the compile cache on in `directory` when Node has one and the directory is a trusted place.
 * Never throws: a cache that cannot be used is a reason in the result, and the program runs as
 * before. Call it before the program's modules are imported (src/cli.ts).
 */
export function startCompileCache(
  directory: string | undefined = process.env[COMPILE_CACHE_ENV],
  api: CompileCacheApi = nodeModule as unknown as CompileCacheApi,
): CompileCacheResult {
  if (typeof api.enableCompileCache !== 'function') return { used: false, why: `Node ${process.version} has no compile cache` };
  if (process.env.NODE_COMPILE_CACHE !== undefined) return { used: false, why: 'NODE_COMPILE_CACHE is set: Node uses its own' };
  const dir = directory === undefined || directory === '' ? COMPILE_CACHE_DIR : directory;
  if (dir === 'off') return { used: false, why: `${COMPILE_CACHE_ENV}=off` };
  if (!isAbsolute(dir)) return { used: false, why: `${COMPILE_CACHE_ENV} must be an absolute path` };
  try {
    // Made and checked as the stateDir is (core/trust.ts): never through another user's link.
    const real = prepareTrustedDir(dir, { create: true, what: `compile cache ${quoteName(dir)}` });
    const result = api.enableCompileCache(real);
    // Node's statuses: 0 FAILED, 1 ENABLED, 2 ALREADY_ENABLED, 3 DISABLED (NODE_DISABLE_COMPILE_CACHE).
    if (result.status !== 1 && result.status !== 2)
      return { used: false, why: result.message ?? `Node did not enable it (status ${result.status})` };
    return { used: true, directory: real };
  } catch (error) {
    return { used: false, why: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
  }
}
