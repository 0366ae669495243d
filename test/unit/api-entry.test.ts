/**
 * The plugin API's entry (src/index.ts, dist/src/index.js) loads only what a plugin needs: not the
 * engine, the journal, the loader, the config or cosmiconfig (they are the command line's). Checked
 * twice: on the source (its static runtime imports, type-only ones left out) and on the built
 * bundle (the files Node loads for `import('dist/src/index.js')`, and the sources their maps name).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Modules of the program that a plugin never needs (relative to the project). */
const NOT_FOR_PLUGINS = [
  'src/core/engine.ts',
  'src/core/loader.ts',
  'src/core/config.ts',
  'src/core/journal.ts',
  'src/core/job.ts',
  'src/app.ts',
  'src/program.ts',
];
/** Packages the command line needs and a plugin does not. */
const NOT_FOR_PLUGINS_PACKAGES = ['cosmiconfig', 'commander', 'zod', 'chokidar'];

/** The specifiers a module imports when it is loaded (type-only imports and exports, and dynamic imports, left out). */
function runtimeImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false);
  const specifiers: string[] = [];
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      const bindings = clause?.namedBindings;
      const onlyTypes =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            bindings !== undefined &&
            ts.isNamedImports(bindings) &&
            bindings.elements.every((e) => e.isTypeOnly)));
      if (!onlyTypes) specifiers.push((statement.moduleSpecifier as ts.StringLiteral).text);
    } else if (ts.isExportDeclaration(statement) && statement.moduleSpecifier !== undefined) {
      const clause = statement.exportClause;
      const onlyTypes =
        statement.isTypeOnly || (clause !== undefined && ts.isNamedExports(clause) && clause.elements.every((e) => e.isTypeOnly));
      if (!onlyTypes) specifiers.push((statement.moduleSpecifier as ts.StringLiteral).text);
    }
  }
  return specifiers;
}

/** Every module of the program and every package the entry loads, following static imports. */
function sourceClosure(entry: string): { modules: string[]; packages: string[] } {
  const modules = new Set<string>();
  const packages = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (modules.has(file)) continue;
    modules.add(file);
    for (const spec of runtimeImports(file)) {
      if (spec.startsWith('node:')) continue;
      if (!spec.startsWith('.')) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
        continue;
      }
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      if (!existsSync(target)) throw new Error(`${relative(PROJECT, file)} imports ${spec}, which is not a module of the source tree`);
      pending.push(target);
    }
  }
  return { modules: [...modules].map((m) => relative(PROJECT, m)).sort(), packages: [...packages].sort() };
}

/** Records every file Node loads (the hooks run in their own thread: each URL is appended to a file). */
const RECORDER = `
import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function load(url, context, next) {
  appendFileSync(log, url + '\\n');
  return next(url, context);
}
`;

/** The files under dist/ that `import(dist/src/index.js)` loads, and the sources their source maps name. */
async function bundleClosure(): Promise<{ files: string[]; sources: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'zdc-api-entry-'));
  try {
    const hooks = join(dir, 'hooks.mjs');
    const log = join(dir, 'loaded.txt');
    writeFileSync(hooks, RECORDER);
    writeFileSync(log, '');
    const script = `
import { register } from 'node:module';
register(${JSON.stringify(pathToFileURL(hooks).href)}, { data: { log: ${JSON.stringify(log)} } });
await import(${JSON.stringify(pathToFileURL(join(PROJECT, 'dist/src/index.js')).href)});
`;
    await execa(process.execPath, ['--input-type=module', '-e', script], { cwd: dir });
    const dist = join(PROJECT, 'dist');
    const files = readFileSync(log, 'utf8')
      .split('\n')
      .filter((url) => url.startsWith('file:'))
      .map((url) => fileURLToPath(url))
      .filter((file) => file.startsWith(`${dist}/`));
    const sources = new Set<string>();
    for (const file of files) {
      if (!existsSync(`${file}.map`)) continue;
      const map = JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[] };
      for (const source of map.sources) sources.add(relative(PROJECT, resolve(dirname(file), source)));
    }
    return { files: files.map((f) => relative(PROJECT, f)).sort(), sources: [...sources].sort() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the plugin API entry', () => {
  it('imports (in the source) neither the engine, the loader, the config nor the packages of the command line', () => {
    const { modules, packages } = sourceClosure(join(PROJECT, 'src/index.ts'));
    expect(modules).toContain('src/core/hooks.ts');
    expect(modules.filter((m) => NOT_FOR_PLUGINS.includes(m))).toEqual([]);
    expect(packages.filter((p) => NOT_FOR_PLUGINS_PACKAGES.includes(p))).toEqual([]);
  });

  it('loads (built and bundled) no code of the engine, the loader, the config or cosmiconfig', async () => {
    const { files, sources } = await bundleClosure();
    expect(files).toContain('dist/src/index.js');
    // The bundle's maps name every module it holds: the test sees what it loads, not file names.
    expect(sources).toContain('src/core/hooks.ts');
    expect(sources.filter((s) => NOT_FOR_PLUGINS.includes(s))).toEqual([]);
    expect(sources.filter((s) => NOT_FOR_PLUGINS_PACKAGES.some((p) => s.startsWith(`node_modules/${p}/`)))).toEqual([]);
  });
});
