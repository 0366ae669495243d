/**
 * Trusted places, through the built CLI run as root: a config planted in the
 * working directory is never run nor used; a config, a plugin or a stateDir
 * another user could write to is refused with one line naming it.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcConfigFile } from '../../src/core/config.js';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';

const NOBODY = 65534;
let p: TestPool;
let config: string;
let markers: string;

/** What a hostile user plants in their run directory: every place cosmiconfig would look. */
interface Planted {
  readonly label: string;
  /** Path relative to the run directory, and its content (given the marker file to write). */
  readonly files: (marker: string, raw: string) => Record<string, string>;
  /** Whether it is code (and so would write its marker if run). */
  readonly code: boolean;
}

const PLANTS: readonly Planted[] = [
  {
    label: 'rc-js',
    code: true,
    files: (m, raw) => ({
      '.zfs-dynamic-creatorrc.js': `require('node:fs').writeFileSync(${JSON.stringify(m)}, 'ran');\nmodule.exports = ${raw};\n`,
    }),
  },
  {
    label: 'rc-cjs',
    code: true,
    files: (m, raw) => ({
      '.zfs-dynamic-creatorrc.cjs': `require('node:fs').writeFileSync(${JSON.stringify(m)}, 'ran');\nmodule.exports = ${raw};\n`,
    }),
  },
  {
    label: 'config-cjs',
    code: true,
    files: (m, raw) => ({
      'zfs-dynamic-creator.config.cjs': `require('node:fs').writeFileSync(${JSON.stringify(m)}, 'ran');\nmodule.exports = ${raw};\n`,
    }),
  },
  // cosmiconfig's "meta config": loaded by merely constructing an explorer, --config or not.
  {
    label: 'meta-cjs',
    code: true,
    files: (m) => ({ '.config/config.cjs': `require('node:fs').writeFileSync(${JSON.stringify(m)}, 'ran');\nmodule.exports = {};\n` }),
  },
  { label: 'rc-yaml', code: false, files: (_m, raw) => ({ '.zfs-dynamic-creatorrc.yaml': `${raw}\n` }) },
  { label: 'rc-json', code: false, files: (_m, raw) => ({ '.zfs-dynamic-creatorrc.json': raw }) },
  { label: 'package-json', code: false, files: (_m, raw) => ({ 'package.json': `{"name":"run","zfs-dynamic-creator":${raw}}` }) },
];

/** The planted config: valid, for this pool, with its own stateDir, so that using it would work and show. */
function plantedConfig(label: string): string {
  return JSON.stringify({
    stateDir: join(markers, `state-${label}`),
    roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: fastPlugins() }],
  });
}

/** A run directory owned by nobody, with the files of `plant` written by its owner. */
async function plantIn(dir: string, plant: Planted): Promise<string> {
  const marker = join(markers, `ran-${plant.label}`);
  await mkdir(dir);
  await writeFile(join(dir, 'data.txt'), `${plant.label}\n`);
  for (const [rel, content] of Object.entries(plant.files(marker, plantedConfig(plant.label)))) {
    const file = join(dir, rel);
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, content);
    await chmod(file, 0o644);
  }
  // Owned by their user, as in the shared root.
  for (const entry of await readdir(dir, { recursive: true })) await chown(join(dir, entry), NOBODY, NOBODY);
  await chown(dir, NOBODY, NOBODY);
  return marker;
}

beforeAll(async () => {
  expect(etcConfigFile(), 'this test needs no /etc/zfs-dynamic-creator/config.* on the machine').toBeUndefined();
  p = await createPool('trust');
  config = await writeConfig(p, fastPlugins());
  markers = join(p.work, 'markers');
  await mkdir(markers, { mode: 0o700 });
  await chmod(p.mount, 0o1777);
});
afterAll(async () => {
  await p?.destroy();
});

describe('a config planted in the working directory', () => {
  it.each(PLANTS.map((x) => [x.label, x] as const))('%s: never run nor used by status, list-plugins, handle .', async (label, plant) => {
    const dir = join(p.mount, `run-${label}`);
    const marker = await plantIn(dir, plant);
    // Standing in it, with no --config: there is no configuration (the planted one is not one).
    for (const args of [['status'], ['list-plugins', '--json'], ['handle', '.']]) {
      const r = await cli(args, { stateDir: p.stateDir, cwd: dir });
      expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain('no configuration found: give --config PATH or create /etc/zfs-dynamic-creator/config.yaml');
      expect(r.stdout).toBe('');
    }
    // With --config, that file is the one used.
    const status = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir, cwd: dir });
    expect(status.exitCode, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as { config: string; stateDir: string }).config).toBe(config);
    const plugins = await cli(['--config', config, 'list-plugins', '--json'], { stateDir: p.stateDir, cwd: dir });
    expect(plugins.exitCode, plugins.stderr).toBe(0);
    expect((JSON.parse(plugins.stdout) as { config: string }).config).toBe(config);
    expect((await datasets(p.pool)).map((d) => d.name)).not.toContain(`${p.pool}/run-${label}`);
    const handled = await cli(['--config', config, 'handle', '.'], { stateDir: p.stateDir, cwd: dir });
    expect(handled.exitCode, handled.stderr).toBe(0);
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/run-${label}`)?.state).toBe('live');
    // Nothing planted ever ran, and the planted stateDir was never made.
    expect(existsSync(marker), `${label} ran`).toBe(false);
    expect(existsSync(join(markers, `state-${label}`))).toBe(false);
    if (plant.code) expect(existsSync(join(dir, Object.keys(plant.files(marker, '{}'))[0]!))).toBe(true);
  });
});

describe('a config another user could change is refused', () => {
  it('writable by others, in a directory writable by others, or owned by nobody: one line naming it, nothing run', async () => {
    const etc = join(p.work, 'etc');
    await mkdir(etc, { mode: 0o755 });
    const marker = join(markers, 'ran-etc');
    const file = join(etc, 'config.cjs');
    await writeFile(
      file,
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\nmodule.exports = ${plantedConfig('etc')};\n`,
    );
    await chmod(file, 0o646);
    const cases: [() => Promise<void>, string][] = [
      [async () => undefined, `config ${file}: refused: "${file}" is writable by others (mode 0646)`],
      [
        async () => {
          await chmod(file, 0o664);
        },
        `config ${file}: refused: "${file}" is writable by group (mode 0664)`,
      ],
      [
        async () => {
          await chmod(file, 0o644);
          await chmod(etc, 0o777);
        },
        `config ${file}: refused: its directory "${etc}" is writable by group and others (mode 0777)`,
      ],
      [
        async () => {
          await chmod(etc, 0o755);
          await chown(file, NOBODY, NOBODY);
        },
        `config ${file}: refused: "${file}" is owned by uid ${NOBODY}, not root`,
      ],
    ];
    for (const [arrange, message] of cases) {
      await arrange();
      for (const args of [['status'], ['list-plugins'], ['handle', join(p.mount, 'whatever')]]) {
        const r = await cli(['--config', file, ...args], { stateDir: p.stateDir });
        expect(r.exitCode, r.stderr).toBe(2);
        expect(r.stderr).toBe(
          `zfs-dynamic-creator: ${message}; it and every directory above it must be owned by root and not writable by group or others (a sticky directory such as /tmp excepted)`,
        );
      }
    }
    expect(existsSync(marker)).toBe(false);
    // Made root's alone again, it is run and used.
    await chown(file, 0, 0);
    const r = await cli(['--config', file, 'status', '--json'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync(marker)).toBe(true);
  });
});

describe('a plugin another user could change is refused', () => {
  it('a plugin file owned by nobody: refused before it is imported, naming it', async () => {
    const dir = join(p.work, 'site-plugins');
    await mkdir(dir, { mode: 0o755 });
    const marker = join(markers, 'ran-plugin');
    const plugin = join(dir, 'site.mjs');
    await writeFile(
      plugin,
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'ran');\nexport default { name: 'site', apply() {} };\n`,
    );
    await chown(plugin, NOBODY, NOBODY);
    const file = join(p.work, 'with-plugin.json');
    await writeFile(
      file,
      JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: [...fastPlugins(), plugin] }] }),
    );
    for (const args of [['list-plugins'], ['status'], ['reconcile']]) {
      const r = await cli(['--config', file, ...args], { stateDir: p.stateDir });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toContain(
        `zfs-dynamic-creator: config ${file}: roots[0].plugins[4]: plugin "${plugin}": refused: "${plugin}" is owned by uid ${NOBODY}, not root;`,
      );
      expect(r.stderr.split('\n')).toHaveLength(1);
    }
    expect(existsSync(marker)).toBe(false);
    await chown(plugin, 0, 0);
    const r = await cli(['--config', file, 'list-plugins', '--json'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync(marker)).toBe(true);
  });
});

describe('the stateDir', () => {
  it('writable by others, or below a directory writable by others: the tool refuses to start', async () => {
    const open = join(p.work, 'open');
    await mkdir(open, { mode: 0o777 });
    await chmod(open, 0o777);
    const below = join(open, 'state');
    let r = await cli(['--config', config, 'status'], { stateDir: below });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(
        `^zfs-dynamic-creator: stateDir "${below}": refused: its directory "${open}" is writable by group and others \\(mode 0777\\); [^\\n]*$`,
      ),
    );
    expect(existsSync(below)).toBe(false);
    const state = join(p.work, 'state-757');
    await mkdir(state, { mode: 0o700 });
    await chmod(state, 0o757);
    r = await cli(['--config', config, 'reconcile'], { stateDir: state });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`zfs-dynamic-creator: stateDir "${state}": refused: "${state}" is writable by others (mode 0757)`);
    await chmod(state, 0o700);
    await chown(state, NOBODY, NOBODY);
    r = await cli(['--config', config, 'handle', join(p.mount, 'x')], { stateDir: state });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`zfs-dynamic-creator: stateDir "${state}": refused: "${state}" is owned by uid ${NOBODY}, not root`);
  });

  it('missing: created 0700, in a trusted place', async () => {
    const state = join(p.work, 'new', 'state');
    const r = await cli(['--config', config, 'status'], { stateDir: state });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await stat(state)).mode & 0o7777).toBe(0o700);
    expect((await stat(state)).uid).toBe(0);
  });
});
