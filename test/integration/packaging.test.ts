/**
 * Packaging: what `npm pack` makes is what an administrator installs, and everything works from
 * the installed bin.
 *
 * The tarball is made from the built tree (`npm run build` first, as scripts/test.sh does; pack
 * itself runs with --ignore-scripts so that it does not rebuild dist/ under other tests' feet).
 * The tarball is installed globally into a throwaway prefix with `npm install -g <tarball>`
 * (dependencies from npm's cache where `npm ci` put them, else from the registry), so npm links
 * the bin and the man page as for a real install, and a module the program imports at run time
 * that is not a production dependency fails here.
 */
import { access, chmod, constants, mkdir, mkdtemp, readFile, readlink, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT } from '../helpers/zfs.js';

interface PackResult {
  readonly filename: string;
  readonly files: readonly { path: string; mode: number }[];
}

let work: string;
let pkg: PackResult;
/** The tarball's contents, extracted. */
let extracted: string;
let prefix: string;
let bin: string;
let installed: string;
const manifest = JSON.parse(await readFile(join(PROJECT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  license?: string;
  bin: Record<string, string>;
  man: string[];
  engines: { node: string };
  files: string[];
  dependencies: Record<string, string>;
};

/** Runs the installed bin as an administrator would: from /, with PATH holding the prefix's bin and node, and no other state. */
async function installedCli(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(bin, args, {
    reject: false,
    cwd: '/',
    stdin: 'ignore',
    extendEnv: false,
    env: { PATH: `${join(prefix, 'bin')}:${dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: work, LANG: 'C.UTF-8', ...env },
    timeout: 60_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

beforeAll(async () => {
  await access(join(PROJECT, manifest.bin['zfs-dynamic-creator']!)).catch(() => {
    throw new Error('dist/ is not built: run npm run build first');
  });
  work = await mkdtemp(join(tmpdir(), 'zdc-pack-'));
  const packed = await execa('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: PROJECT,
    env: { npm_config_cache: join(work, 'pack-cache') },
  });
  pkg = (JSON.parse(packed.stdout) as PackResult[])[0]!;
  extracted = join(work, 'package');
  await execa('tar', ['-xzf', join(work, pkg.filename), '-C', work]);

  // The tarball itself, installed as an administrator installs it. Its dependencies come from
  // npm's cache where `npm ci` left them (--prefer-offline) and from the registry otherwise.
  prefix = join(work, 'prefix');
  const npm = await execa(
    'npm',
    ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', join(work, pkg.filename)],
    { reject: false, cwd: work },
  );
  if (npm.exitCode !== 0) throw new Error(`npm install -g failed: ${npm.stderr}`);
  bin = join(prefix, 'bin', 'zfs-dynamic-creator');
  installed = join(prefix, 'lib', 'node_modules', 'zfs-dynamic-creator');
}, 180_000);
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the tarball', () => {
  const paths = (): string[] => pkg.files.map((f) => f.path);

  it('holds the license, the README, the docs, the man page, the units and the built program, and nothing of the tests', () => {
    for (const file of [
      'LICENSE',
      'README.md',
      'docs/guarantees.md',
      'docs/operating.md',
      'docs/architecture.md',
      'man/zfs-dynamic-creator.1',
      'package.json',
      'dist/src/cli.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/plugins/zfs/index.js',
      'contrib/systemd/zfs-dynamic-creator.service',
      'contrib/systemd/zfs-dynamic-creator-reconcile.timer',
      'contrib/incron.d/zfs-dynamic-creator',
    ]) {
      expect(paths(), file).toContain(file);
    }
    expect(
      paths().filter((p) => /^(test|bench|scripts|dist\/bench|dist\/test|node_modules)\//.test(p) || p === 'package-lock.json'),
    ).toEqual([]);
  });

  it('declares its license and ships its text', async () => {
    expect(manifest.license).toBe('GPL-3.0-or-later');
    const text = await readFile(join(extracted, 'LICENSE'), 'utf8');
    expect(text).toContain('GNU GENERAL PUBLIC LICENSE');
    expect(text).toContain('Version 3, 29 June 2007');
  });

  it("has no source map that points at a file it does not ship (a bundled dependency's source is embedded in the map)", async () => {
    const shipped = new Set(paths());
    const maps = paths().filter((p) => p.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const dangling: string[] = [];
    for (const map of maps) {
      const { sources, sourcesContent } = JSON.parse(await readFile(join(extracted, map), 'utf8')) as {
        sources: string[];
        sourcesContent?: (string | null)[];
      };
      for (const [i, source] of sources.entries()) {
        const target = relative(extracted, resolve(extracted, dirname(map), source));
        if (!shipped.has(target) && typeof sourcesContent?.[i] !== 'string') dangling.push(`${map} → ${source}`);
      }
    }
    for (const js of paths().filter((p) => /\.(js|d\.ts)$/.test(p))) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(await readFile(join(extracted, js), 'utf8'))?.[1];
      if (url !== undefined && !shipped.has(relative(extracted, resolve(extracted, dirname(js), url)))) dangling.push(`${js} → ${url}`);
    }
    expect(dangling).toEqual([]);
  });

  it('its bin, man and engines fields name shipped files and a Node this is', () => {
    for (const file of Object.values(manifest.bin)) expect(paths()).toContain(file);
    for (const file of manifest.man) expect(paths()).toContain(file.replace(/^\.\//, ''));
    const min = /^>=(\d+)\.(\d+)$/.exec(manifest.engines.node);
    expect(min, manifest.engines.node).not.toBeNull();
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    expect(major > Number(min![1]) || (major === Number(min![1]) && minor >= Number(min![2]))).toBe(true);
  });
});

describe('installed with npm install -g', () => {
  it('links the bin and the man page into the prefix, with the docs and the license next to the program', async () => {
    expect(await readlink(bin)).toBe('../lib/node_modules/zfs-dynamic-creator/dist/src/cli.js');
    expect((await stat(bin)).mode & 0o111).not.toBe(0);
    await access(join(prefix, 'share', 'man', 'man1', 'zfs-dynamic-creator.1'), constants.R_OK);
    for (const file of ['LICENSE', 'README.md', 'docs/guarantees.md', 'docs/operating.md'])
      await access(join(installed, file), constants.R_OK);
    // The units' Documentation= file:///usr/lib/node_modules/… is this README under the prefix /usr.
    const unit = await readFile(join(installed, 'contrib', 'systemd', 'zfs-dynamic-creator.service'), 'utf8');
    for (const [, path] of unit.matchAll(/^Documentation=file:\/\/\/usr\/(\S+)$/gm)) await access(join(prefix, path!), constants.R_OK);
  });

  it('--version, --help and help <command> for every command work from the installed bin', async () => {
    const version = await installedCli(['--version']);
    expect(version).toMatchObject({ exitCode: 0, stdout: manifest.version });
    const help = await installedCli(['--help']);
    expect(help.exitCode, help.stderr).toBe(0);
    const commands = [...help.stdout.slice(help.stdout.indexOf('\nCommands:\n')).matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!);
    expect(commands).toEqual(
      expect.arrayContaining([
        'handle',
        'recover',
        'reconcile',
        'watch',
        'status',
        'list-plugins',
        'history',
        'doctor',
        'check-config',
        'help',
      ]),
    );
    for (const command of commands) {
      const r = await installedCli(['help', command]);
      expect(r.exitCode, `help ${command}: ${r.stderr}`).toBe(0);
      expect(r.stdout, command).toContain(`Usage: zfs-dynamic-creator ${command}`);
      expect(r.stdout, command).toMatch(/Examples:/);
    }
    const wrong = await installedCli(['hlep']);
    expect(wrong.exitCode).toBe(2);
  });

  it('list-plugins and check-config with a config load the installed builtins', async () => {
    const etc = join(work, 'etc');
    await mkdir(etc, { mode: 0o755 });
    await chmod(work, 0o755);
    const rootdir = join(work, 'root');
    await mkdir(rootdir);
    const config = join(etc, 'config.yaml');
    await writeFile(
      config,
      `stateDir: ${join(work, 'state')}\nplugins:\n  - name-filter\n  - quiet-wait\n  - zfs\n  - rsync\nroots:\n  - rootfs: tank/runs\n    rootdir: ${rootdir}\n    plugins:\n      zfs: { snapshot: converted }\n`,
      { mode: 0o644 },
    );
    const list = await installedCli(['--config', config, 'list-plugins', '--json']);
    expect(list.exitCode, list.stderr).toBe(0);
    const roots = (
      JSON.parse(list.stdout) as {
        roots: { plugins: { name: string; location: string; version: string; options: Record<string, unknown> }[] }[];
      }
    ).roots;
    expect(roots[0]!.plugins.map((p) => p.name)).toEqual(['name-filter', 'quiet-wait', 'zfs', 'rsync']);
    const real = await realpath(installed);
    for (const p of roots[0]!.plugins) {
      expect(p.location.startsWith(`${real}/dist/plugins/`), p.location).toBe(true);
      expect(p.version).toBe(manifest.version);
    }
    expect(roots[0]!.plugins[2]!.options).toMatchObject({ snapshot: 'converted' });
    // check-config checks each root's dataset too: tank/runs is no dataset here (exit 1: the pool may come later).
    const check = await installedCli(['--config', config, 'check-config', '--options']);
    expect(check.exitCode, check.stderr).toBe(1);
    expect(check.stderr).toContain(`config ${config}: roots[0].rootfs: cannot open 'tank/runs'`);
    const bad = join(etc, 'bad.yaml');
    await writeFile(bad, 'roots:\n  - rootfs: tank/runs\n    rootdir: /x\n   bad: indent\n', { mode: 0o644 });
    const r = await installedCli(['--config', bad, 'check-config']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`config ${bad}: YAML syntax error at line`);
  });

  it('the man page is readable with man -l and names every command', async () => {
    const page = join(prefix, 'share', 'man', 'man1', 'zfs-dynamic-creator.1');
    const r = await execa('man', ['-l', page], { env: { MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '100', LANG: 'C.UTF-8' }, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/warning/i);
    const text = String(r.stdout);
    expect(text).toMatch(/NAME\s+zfs-dynamic-creator/);
    for (const command of ['handle', 'recover', 'reconcile', 'watch', 'status', 'list-plugins', 'history', 'doctor', 'check-config'])
      expect(text, command).toContain(command);
  });
});
