/**
 * Builds the self-contained program: one executable carrying its own Node runtime (Node's single
 * executable applications). `node scripts/sea.mjs [--out DIR]` (default build/sea/) writes
 * DIR/zfs-dynamic-creator; scripts/package-deb.mjs runs it.
 *
 *   1. esbuild bundles src/sea.ts, the whole program and every builtin plugin (plugins/<name>/)
 *      into one CommonJS script (a SEA's main script is CommonJS; it loads only Node's builtin
 *      modules, so everything else is in it).
 *   2. The Node binary that runs this script (ZDC_SEA_NODE to carry another) makes the
 *      preparation blob (with V8's code cache, for start-up) and is copied; postject (npm's
 *      official injector, a devDependency) injects the blob. Nothing is downloaded.
 * A missing Node binary or postject stops the build with one line saying so.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import process from 'node:process';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const project = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const out = resolve(values.out ?? join(project, 'build', 'sea'));
const fail = (message) => {
  process.stderr.write(`sea: ${message}\n`);
  process.exit(1);
};

const node = process.env.ZDC_SEA_NODE || process.execPath;
if (!existsSync(node))
  fail(`no Node binary at ${node} (the program carries the build machine's Node: install Node.js 20.19 or later, or set ZDC_SEA_NODE)`);
let postject;
try {
  postject = createRequire(join(project, 'package.json')).resolve('postject/dist/cli.js');
} catch {
  fail('postject is not installed (it injects the program into the Node binary): run npm ci in the checkout');
}

const { version } = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'));
const plugins = readdirSync(join(project, 'plugins'))
  .filter((name) => existsSync(join(project, 'plugins', name, 'index.ts')))
  .sort();
const entry = [
  "import { seaMain } from './src/sea.ts';",
  ...plugins.map((name, i) => `import p${i} from './plugins/${name}/index.ts';`),
  `void seaMain(${JSON.stringify(version)}, new Map([${plugins.map((name, i) => `[${JSON.stringify(name)}, p${i}]`).join(', ')}]));`,
].join('\n');

mkdirSync(out, { recursive: true });
const main = join(out, 'main.cjs');
const { metafile } = await build({
  absWorkingDir: project,
  stdin: { contents: entry, resolveDir: project, loader: 'ts', sourcefile: 'sea-entry.ts' },
  outfile: main,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20.19',
  // cosmiconfig's loader for config.ts files (never used: the config files are YAML, JSON or JS).
  external: ['typescript'],
  // The loader derives its place from its module's URL: here, the executable's.
  define: { 'import.meta.url': '__zdcModuleUrl' },
  banner: { js: 'var __zdcModuleUrl = require("node:url").pathToFileURL(process.execPath).href;' },
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  metafile: true,
});
// The npm packages bundled in, with their licenses (for the Debian package's copyright file).
const bundled = new Map();
for (const input of Object.keys(metafile.inputs)) {
  const dir = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1];
  if (dir === undefined || bundled.has(dir)) continue;
  const { name, version, license } = JSON.parse(readFileSync(join(project, dir, 'package.json'), 'utf8'));
  bundled.set(dir, { name, version, license: String(license ?? 'see the package') });
}
writeFileSync(
  join(out, 'bundled.json'),
  `${JSON.stringify(
    [...bundled.values()].sort((a, b) => a.name.localeCompare(b.name)),
    null,
    2,
  )}\n`,
);

const blob = join(out, 'sea.blob');
const config = join(out, 'sea-config.json');
writeFileSync(config, JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }));
const run = (file, args) => {
  try {
    execFileSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    fail(
      `${[file, ...args].join(' ')} failed: ${String(error.stderr ?? error.message)
        .trim()
        .split('\n')
        .at(-1)}`,
    );
  }
};
run(node, ['--experimental-sea-config', config]);
const program = join(out, 'zfs-dynamic-creator');
copyFileSync(node, program);
chmodSync(program, 0o755);
// Without the symbol tables (13 MB of Node's 99), as Debian ships binaries; the blob goes in after.
run('strip', ['--strip-unneeded', program]);
run(process.execPath, [postject, program, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2']);
process.stdout.write(`${program}\n`);
