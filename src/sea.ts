/**
 * The self-contained program's main (Node's single executable application; scripts/sea.mjs
 * bundles this, the whole program and every builtin plugin into one CommonJS script and injects
 * it into a copy of the build machine's Node binary).
 *
 * Its builtins come from the executable (src/core/embedded.ts). A site plugin is still imported
 * from its trusted place on disk (src/core/loader.ts), and its `import … from
 * 'zfs-dynamic-creator'` resolves to this very program's API, through module hooks registered
 * before the first such import (none at all for a run that loads only builtins). The main script
 * is compiled from V8's code cache (start-up), which leaves it no import() of its own: a plugin
 * is imported through a one-line script that uses Node's default loader.
 */
import { register } from 'node:module';
import { Script, constants } from 'node:vm';
import * as api from './index.js';
import { embed } from './core/embedded.js';
import { main, routeProcessWarnings } from './program.js';

const API = 'zfs-dynamic-creator';
const GLOBAL = 'zfs-dynamic-creator.api';
const URL_ = 'zfs-dynamic-creator:api';

/** The hooks module (run by Node's loader thread): 'zfs-dynamic-creator' → a module re-exporting the API held in a global. */
function hooksSource(names: readonly string[]): string {
  const exports = names.filter((n) => n !== 'default').map((n) => `export const ${n} = api[${JSON.stringify(n)}];`);
  const source = [`const api = globalThis[Symbol.for(${JSON.stringify(GLOBAL)})];`, ...exports].join('\n');
  return [
    `export async function resolve(specifier, context, next) {`,
    `  return specifier === ${JSON.stringify(API)} ? { url: ${JSON.stringify(URL_)}, shortCircuit: true } : next(specifier, context);`,
    `}`,
    `export async function load(url, context, next) {`,
    `  return url === ${JSON.stringify(URL_)} ? { format: 'module', source: ${JSON.stringify(source)}, shortCircuit: true } : next(url, context);`,
    `}`,
  ].join('\n');
}

let importer: ((url: string) => Promise<unknown>) | undefined;
/** import(url), the API's resolver registered first. */
function importModule(url: string): Promise<unknown> {
  if (importer === undefined) {
    (globalThis as Record<symbol, unknown>)[Symbol.for(GLOBAL)] = api;
    register(`data:text/javascript,${encodeURIComponent(hooksSource(Object.keys(api)))}`);
    importer = new Script('(url) => import(url)', {
      importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    }).runInThisContext() as (url: string) => Promise<unknown>;
  }
  return importer(url);
}

/** Called by the bundle's generated entry with the version and the builtins it holds. */
export async function seaMain(version: string, plugins: ReadonlyMap<string, unknown>): Promise<void> {
  embed({ version, plugins, importModule });
  routeProcessWarnings(process.env.ZFS_DYNAMIC_CREATOR_WARNINGS === 'error' ? 'error' : 'debug');
  process.exitCode = await main(process.argv.slice(2));
}
