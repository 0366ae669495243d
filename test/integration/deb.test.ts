/**
 * The Debian package, installed as an administrator would, and what comes with it.
 *
 * scripts/package-deb.mjs builds the self-contained program and the .deb once for this file; the
 * package is unpacked with `dpkg -x` into a throwaway root (this machine's /usr is never touched)
 * and every command runs from the installed program against a real pool, as in
 * packaging.test.ts for the npm tarball. The metrics textfile it writes after a conversion, a
 * failure and a deferral passes `promtool check metrics`; the Grafana dashboard and the alert
 * rules name only metrics that textfile holds; the bash completion is run as bash runs it.
 * (The textfile after a stalled run passes promtool in ops-status.test.ts, with the npm program.)
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExposition, sampleValue } from '../helpers/prom.js';
import { cli, createPool, fastPlugins, writeConfig, zfs, PROJECT, type TestPool } from '../helpers/zfs.js';

const NAME = 'zfs-dynamic-creator';
const manifest = JSON.parse(await readFile(join(PROJECT, 'package.json'), 'utf8')) as { version: string };

let work: string;
let deb: string;
/** Where the package is unpacked: the throwaway root. */
let installed: string;
let bin: string;
let p: TestPool;
let textfile: string;
/** lintian's run, started as soon as the package is built (it takes minutes; it runs beside the tests). */
let lintian: Promise<{ exitCode?: number; stdout: string; stderr: string }>;
/** Every metric family the tool wrote in these runs (from its textfile's TYPE lines). */
const written = new Set<string>();

/** Runs the installed program as an administrator would: from /, a system PATH, no other state. */
async function installedCli(args: readonly string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(bin, args, {
    reject: false,
    cwd: '/',
    stdin: 'ignore',
    extendEnv: false,
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: work, LANG: 'C.UTF-8', ZFS_DYNAMIC_CREATOR_STATE_DIR: p.stateDir },
    timeout: 120_000,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** promtool's verdict on the textfile as it is now; the families it holds are remembered. */
async function checkMetrics(): Promise<string> {
  const text = await readFile(textfile, 'utf8');
  for (const [, name] of text.matchAll(/^# TYPE (\S+) /gm)) written.add(name!);
  const r = await execa('promtool', ['check', 'metrics'], { input: text, reject: false });
  return `${r.exitCode} ${r.stdout}${r.stderr}`.trim();
}

const SITE_PLUGIN = `import { definePlugin } from 'zfs-dynamic-creator';
export default definePlugin({
  name: 'site-stage',
  version: '2.0.0',
  apply(hooks) {
    hooks.publish.tap('site-stage', () => undefined);
  },
});
`;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'zdc-deb-'));
  await chmod(work, 0o755);
  const built = await execa(process.execPath, [join(PROJECT, 'scripts', 'package-deb.mjs'), '--out', join(work, 'build')], {
    reject: false,
    cwd: work,
  });
  if (built.exitCode !== 0) throw new Error(`package-deb failed: ${built.stderr}`);
  deb = built.stdout.trim();
  lintian = execa('lintian', ['--fail-on', 'error', deb], { reject: false, env: { LANG: 'C.UTF-8' } });
  lintian.catch(() => undefined);
  installed = join(work, 'root');
  await execa('dpkg', ['-x', deb, installed]);
  bin = join(installed, 'usr', 'bin', NAME);
  p = await createPool('deb');
  textfile = join(p.work, 'zdc.prom');
}, 900_000);
afterAll(async () => {
  await p?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the package', () => {
  it('is named and versioned from package.json, depends on what the tool calls, and puts nothing under /etc', async () => {
    expect(deb).toMatch(new RegExp(`/${NAME}_${manifest.version.replace(/\./g, '\\.')}_[a-z0-9]+\\.deb$`));
    const field = async (name: string): Promise<string> => (await execa('dpkg-deb', ['--field', deb, name])).stdout.trim();
    expect(await field('Version')).toBe(manifest.version);
    expect(await field('Depends')).toMatch(/(^|, )rsync, util-linux \(>= [\d.]+\), zfsutils-linux \| zfs-fuse$/);
    expect(await field('Depends')).toMatch(/libc6 \(>= /);
    expect(await field('Recommends')).toBe('nfs-kernel-server');
    const paths = (await execa('dpkg-deb', ['--contents', deb])).stdout
      .split('\n')
      .map((l) => l.replace(/^.* \.\//, '/').replace(/ -> .*$/, ''));
    for (const path of [
      `/usr/bin/${NAME}`,
      `/usr/share/man/man1/${NAME}.1.gz`,
      `/lib/systemd/system/${NAME}.service`,
      `/lib/systemd/system/${NAME}-reconcile.service`,
      `/lib/systemd/system/${NAME}-reconcile.timer`,
      `/usr/share/bash-completion/completions/${NAME}`,
      `/usr/share/doc/${NAME}/copyright`,
      `/usr/share/doc/${NAME}/changelog.gz`,
      `/usr/share/doc/${NAME}/examples/incron.d/${NAME}`,
      `/usr/share/doc/${NAME}/examples/config.yaml`,
    ]) {
      expect(paths, path).toContain(path);
    }
    expect(paths.filter((path) => path.startsWith('/etc/') || path.startsWith('/var/'))).toEqual([]);
  });

  it('its maintainer scripts only make systemd re-read the units: nothing is enabled, started, stopped or restarted', async () => {
    const control = join(work, 'control');
    await execa('dpkg-deb', ['--control', deb, control]);
    for (const script of ['postinst', 'postrm']) {
      const text = await readFile(join(control, script), 'utf8');
      const commands = text
        .split('\n')
        .filter((l) => /^\s*[^#\s]/.test(l) && /\b(systemctl|deb-systemd-\S+|invoke-rc\.d|service|rm)\b/.test(l));
      expect(
        commands.map((l) => l.trim()),
        script,
      ).toEqual(['systemctl --system daemon-reload >/dev/null || true']);
      await execa('sh', ['-n', join(control, script)]);
    }
    await expect(readFile(join(control, 'prerm'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('the building script says in one line that the Node binary is missing', async () => {
    const r = await execa(process.execPath, [join(PROJECT, 'scripts', 'sea.mjs'), '--out', join(work, 'no-node')], {
      reject: false,
      env: { ZDC_SEA_NODE: join(work, 'no-such-node') },
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^sea: no Node binary at .*no-such-node \(/)]);
  });
});

describe('the installed program', () => {
  it('says which runtime it carries', async () => {
    const r = await installedCli(['--version']);
    expect(r).toMatchObject({ exitCode: 0, stdout: `${manifest.version} (self-contained, Node.js ${process.version})` });
  });

  it("converts a directory, with a site plugin that imports the program's own API; promtool accepts the textfile after a conversion, a failure, a kill and a deferral", async () => {
    const plugin = join(p.work, 'site-stage.mjs');
    await writeFile(plugin, SITE_PLUGIN, { mode: 0o644 });
    const config = await writeConfig(p, [...fastPlugins(), plugin], { metrics: { textfile } });
    const list = await installedCli(['--config', config, 'list-plugins', '--json']);
    expect(list.exitCode, list.stderr).toBe(0);
    const plugins = (
      JSON.parse(list.stdout) as { roots: { plugins: { name: string; source: string; version: string; location: string }[] }[] }
    ).roots[0]!.plugins;
    expect(plugins.map((x) => [x.name, x.source, x.version])).toEqual([
      ['name-filter', 'builtin', manifest.version],
      ['quiet-wait', 'builtin', manifest.version],
      ['zfs', 'builtin', manifest.version],
      ['rsync', 'builtin', manifest.version],
      ['site-stage', 'path', '2.0.0'],
    ]);
    expect(plugins.at(-1)!.location).toBe(plugin);

    await mkdir(join(p.mount, 'run1', 'sub'), { recursive: true });
    await writeFile(join(p.mount, 'run1', 'sub', 'a'), Buffer.alloc(4096, 1));
    const converted = await installedCli(['--config', config, 'handle', join(p.mount, 'run1')]);
    expect(converted.exitCode, converted.stderr).toBe(0);
    expect(await zfs('get', '-H', '-o', 'value', 'org.zfs-dynamic-creator:version', `${p.pool}/run1`)).toBe(manifest.version);
    expect(await checkMetrics()).toBe('0');

    const failing = await writeConfig(
      p,
      fastPlugins({ more: [['fault-injection', { killAt: 'migrate', when: 'after', action: 'fail' }]] }),
      { metrics: { textfile } },
      'fail.json',
    );
    await mkdir(join(p.mount, 'run2'));
    await writeFile(join(p.mount, 'run2', 'b'), 'b');
    expect((await installedCli(['--config', failing, 'handle', join(p.mount, 'run2')])).exitCode).toBe(1);
    expect(await checkMetrics()).toBe('0');

    const impatient = await writeConfig(
      p,
      [['quiet-wait', { quietSeconds: 30, maxWaitSeconds: 0.5 }], 'zfs', 'rsync'],
      { metrics: { textfile } },
      'impatient.json',
    );
    await mkdir(join(p.mount, 'run3'));
    // Killed mid-job (SIGKILL), in a second root (the next run for a root finishes its interrupted
    // jobs first): the next process that writes the textfile shows it.
    await zfs('create', `${p.pool}/other`);
    const other = join(p.mount, 'other');
    const killing = join(p.work, 'kill.json');
    await writeFile(
      killing,
      JSON.stringify({
        stateDir: p.stateDir,
        roots: [
          {
            rootfs: `${p.pool}/other`,
            rootdir: other,
            plugins: fastPlugins({ more: [['fault-injection', { killAt: 'migrate', when: 'after' }]] }),
          },
        ],
        metrics: { textfile },
      }),
    );
    await mkdir(join(other, 'run4'));
    await writeFile(join(other, 'run4', 'd'), 'd');
    expect((await installedCli(['--config', killing, 'handle', join(other, 'run4')])).exitCode).toBe(-1);

    expect((await installedCli(['--config', impatient, 'handle', join(p.mount, 'run3')])).exitCode).toBe(75);
    expect(await checkMetrics()).toBe('0');
    const families = parseExposition(await readFile(textfile, 'utf8'));
    for (const outcome of ['converted', 'failed', 'deferred'])
      expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { root: p.mount, outcome }), outcome).toBe(1);
    expect(sampleValue(families, 'zfs_dynamic_creator_interrupted_jobs', { root: p.mount })).toBe(0);
    expect(sampleValue(families, 'zfs_dynamic_creator_interrupted_jobs', { root: other })).toBe(1);
    expect(sampleValue(families, 'zfs_dynamic_creator_oldest_interrupted_job_timestamp_seconds', { root: other })).toBeGreaterThan(0);
  });

  it('status, history and doctor say from the installed program what the npm program says', async () => {
    // No site plugin here: from the npm program, its import of 'zfs-dynamic-creator' finds no package in /tmp.
    const config = await writeConfig(p, fastPlugins(), { metrics: { textfile } }, 'plain.json');
    for (const command of ['status', 'history', 'doctor']) {
      const mine = await installedCli(['--config', config, command, '--json']);
      const npm = await cli(['--config', config, command, '--json'], { stateDir: p.stateDir });
      expect(mine.exitCode, `${command}: ${mine.stderr}`).toBe(npm.exitCode);
      const shape = (text: string): unknown => {
        const data = JSON.parse(text) as Record<string, unknown>;
        // doctor's checks, without the details that name where the program lives.
        if (command === 'doctor') return (data.checks as { check: string; status: string }[]).map((c) => [c.check, c.status]);
        return data;
      };
      expect(shape(mine.stdout), command).toEqual(shape(npm.stdout));
    }
    const history = JSON.parse((await installedCli(['--config', config, 'history', '--json'])).stdout) as {
      roots: { conversions: { dataset: string; version: string | null }[] }[];
    };
    expect(history.roots[0]!.conversions).toContainEqual(expect.objectContaining({ dataset: `${p.pool}/run1`, version: manifest.version }));
    // The second root's interrupted job, known from the journal.
    const status = JSON.parse((await installedCli(['--config', config, 'status', '--json'])).stdout) as {
      roots: { jobs: { name: string; status: string }[] }[];
    };
    expect(status.roots.flatMap((r) => r.jobs)).toContainEqual(expect.objectContaining({ name: 'run4', status: 'interrupted' }));
  });

  it('check-config of a bad config names the file and the line', async () => {
    const bad = join(p.work, 'bad.yaml');
    await writeFile(bad, 'roots:\n  - rootfs: tank/runs\n    rootdir: /x\n   bad: indent\n', { mode: 0o644 });
    const r = await installedCli(['--config', bad, 'check-config']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`config ${bad}: YAML syntax error at line`);
  });
});

describe('contrib', () => {
  const named = (text: string): string[] => [...new Set([...text.matchAll(/\bzfs_dynamic_creator_[a-z_]+/g)].map((m) => m[0]))];
  /** A name a query may use: a family the tool wrote, or a histogram's series. */
  const isWritten = (name: string): boolean => written.has(name) || written.has(name.replace(/_(bucket|sum|count)$/, ''));

  it('the alert rules pass promtool check rules, and the rules and the dashboard name only metrics the tool writes', async () => {
    const rules = join(PROJECT, 'contrib', 'prometheus', `${NAME}.rules.yml`);
    const check = await execa('promtool', ['check', 'rules', rules], { reject: false });
    expect(check.exitCode, `${check.stdout}${check.stderr}`).toBe(0);
    expect(written.size).toBeGreaterThan(0);
    const dashboard = JSON.parse(await readFile(join(PROJECT, 'contrib', 'grafana', `${NAME}.json`), 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const queries = dashboard.panels.flatMap((panel) => panel.targets.map((t) => t.expr));
    expect(queries.length).toBeGreaterThan(0);
    for (const query of queries) expect(named(query).length, query).toBeGreaterThan(0);
    const used = [...named(await readFile(rules, 'utf8')), ...queries.flatMap(named)];
    expect(used.filter((name) => !isWritten(name))).toEqual([]);
  });

  it("bash completes the commands, each command's options, and the configured roots for --root and handle", async () => {
    const config = join(p.work, 'config.json');
    const complete = async (...words: string[]): Promise<string[]> => {
      const script = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _zfs_dynamic_creator; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const r = await execa('bash', [
        '-c',
        script,
        'bash',
        join(installed, 'usr', 'share', 'bash-completion', 'completions', NAME),
        bin,
        ...words,
      ]);
      return r.stdout.split('\n').filter(Boolean).sort();
    };
    const help = (await installedCli(['--help'])).stdout;
    const commands = [...help.slice(help.indexOf('\nCommands:\n')).matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!);
    expect(await complete('')).toEqual([...commands].sort());
    for (const command of commands.filter((c) => c !== 'help')) {
      const text = (await installedCli(['help', command])).stdout;
      const options = [...text.slice(text.indexOf('\nOptions:\n')).matchAll(/^ {2}(?:(-[a-zA-Z]), )?(--[a-z-]+)/gm)].flatMap((m) =>
        m[1] ? [m[1], m[2]!] : [m[2]!],
      );
      expect(await complete(command, '-'), command).toEqual([...new Set(options)].sort());
    }
    expect(await complete('--config', config, 'reconcile', '--root', '')).toEqual([p.mount]);
    expect(await complete('--config', config, 'handle', '')).toEqual([`${p.mount}/`]);
    expect(await complete('--config', config, 'handle', `${p.mount}/run`)).toEqual(['run1', 'run2', 'run3'].map((n) => join(p.mount, n)));
  });
});

// Last: lintian ran beside everything above.
describe('lintian', () => {
  it('lintian reports no error', async () => {
    const r = await lintian;
    expect(
      r.stdout.split('\n').filter((l) => l.startsWith('E: ')),
      r.stdout,
    ).toEqual([]);
    expect(r.exitCode, `${r.stdout}${r.stderr}`).toBe(0);
  }, 600_000);
});
