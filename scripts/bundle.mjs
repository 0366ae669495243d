/**
 * The second half of `npm run build`: after tsc has type-checked and emitted dist/ (declarations,
 * the benchmarks, dist/src/man.js), esbuild bundles the program's entry points with their
 * dependencies, so that a run loads a few files instead of ~400 ES modules (the incron path,
 * a run for every directory made in a root, starts in well under half the time).
 *
 * Entry points (the paths do not change):
 *   dist/src/cli.js                the bin: turns on the compile cache, then loads the command line (a chunk)
 *   dist/src/index.js              the public plugin API (the package's main, imported by site plugins)
 *   dist/src/testing.js            the plugin authors' test kit (zfs-dynamic-creator/testing; loaded by no run)
 *   dist/plugins/<name>/index.js   each builtin plugin (loaded by the plugin loader, as before)
 * Code used by more than one of them, the core included, is in shared chunks (dist/src/chunks/),
 * loaded once per process: the CLI, the builtins and a site plugin importing the package all see
 * the same classes (instanceof RefusedError, CommandError, … holds across them). Commands the CLI
 * imports when they run (watch, doctor, status, …) are chunks of their own.
 * The chunks sit two levels below dist/ like dist/src/core/ did, so the paths the core derives
 * from its own location (dist/plugins/, package.json) are unchanged.
 *
 * tsc's per-module output of src/ and plugins/ stays beside the bundle (the declarations are the
 * package's types; tests import single modules such as dist/src/metrics/textfile.js in child
 * processes), but nothing the entry points load imports it: a run loads the bundle only. The
 * package's "exports" let site plugins import only dist/src/index.js (and the kit, dist/src/testing.js).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { build } from 'esbuild';

const project = resolve(import.meta.dirname, '..');
const dist = join(project, 'dist');
const plugins = readdirSync(join(project, 'plugins'))
  .filter((name) => existsSync(join(project, 'plugins', name, 'index.ts')))
  .map((name) => `plugins/${name}/index.ts`);

rmSync(join(dist, 'src', 'chunks'), { recursive: true, force: true });
const result = await build({
  absWorkingDir: project,
  entryPoints: ['src/cli.ts', 'src/index.ts', 'src/testing.ts', ...plugins],
  outdir: 'dist',
  outbase: '.',
  entryNames: '[dir]/[name]',
  chunkNames: 'src/chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  sourcemap: 'linked',
  // The dependencies' sources are embedded (the package does not ship them); the program's own are
  // shipped (src/, plugins/) and left out of the maps below.
  sourcesContent: true,
  // cosmiconfig's loader for config.ts files (never used: the config files are YAML, JSON or JS).
  external: ['typescript'],
  // CommonJS dependencies (commander, tapable, cosmiconfig, cross-spawn) call require().
  banner: {
    js: "import { createRequire as __zdcCreateRequire } from 'node:module';\nconst require = __zdcCreateRequire(import.meta.url);",
  },
  metafile: true,
  logLevel: 'warning',
  // Less source for V8 to parse at every start (a run that rejects a name loads about 0.95 MB of
  // bundle without this, 0.7 MB with it). Identifiers are kept, so stack traces stay readable
  // without the maps.
  minifyWhitespace: true,
  minifySyntax: true,
});

const outputs = new Set(Object.keys(result.metafile.outputs).map((file) => resolve(project, file)));
/** A map's sources in src/ and plugins/ are shipped: their content is not repeated in the map. */
for (const file of outputs) {
  if (!file.endsWith('.js.map')) continue;
  const map = JSON.parse(readFileSync(file, 'utf8'));
  map.sourcesContent = map.sources.map((source, i) => {
    const own = relative(project, resolve(dirname(file), source));
    return /^(src|plugins)\//.test(own) ? null : map.sourcesContent[i];
  });
  writeFileSync(file, JSON.stringify(map));
}
for (const file of ['src/cli.js', 'src/index.js', 'src/testing.js']) {
  if (!outputs.has(join(dist, file))) throw new Error(`bundle: no ${file} in ${relative(project, dist)}`);
}

/** What this build was made from (the benchmarks record it as the commit their figures belong to). */
const git = (args) => {
  try {
    return execFileSync('git', args, { cwd: project, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
};
const commit = git(['rev-parse', 'HEAD']);
writeFileSync(
  join(dist, 'build.json'),
  `${JSON.stringify({ commit: commit ?? null, dirty: commit === undefined ? null : git(['status', '--porcelain', '--untracked-files=no']) !== '' })}\n`,
);
