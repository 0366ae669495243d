/**
 * The systemd units in contrib/systemd: `systemd-analyze verify` is clean (with the program and
 * its man page where the units expect them), the hardening is there and none of the options that
 * would hide the tool's mounts is, config errors are not restarted, the ordering is right, every
 * command a unit runs exists, and `systemd-analyze security` rates the daemon far better than
 * before. systemd-analyze must be installed (scripts/setup.sh does it): without it this fails.
 */
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/program.js';
import { EXIT } from '../../src/commands/shared.js';
import { CLI, PROJECT } from '../helpers/zfs.js';

const UNITS = join(PROJECT, 'contrib', 'systemd');
const BIN = '/usr/bin/zfs-dynamic-creator';
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'zdc-units-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Every `Key=value` of a unit file, by key, in order (repeated keys accumulate). */
async function directives(file: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

async function systemdAnalyze(): Promise<string> {
  const which = await execa('sh', ['-c', 'command -v systemd-analyze'], { reject: false });
  if (which.exitCode !== 0) throw new Error('systemd-analyze is missing: run scripts/setup.sh as root (it installs the systemd package)');
  return which.stdout.trim();
}

describe('the systemd units', () => {
  it('pass systemd-analyze verify, with the program and its man page where the units point', async () => {
    const analyze = await systemdAnalyze();
    // The units name /usr/bin/zfs-dynamic-creator, which a test must not install: the copies
    // name a wrapper of the built CLI instead; nothing else is changed.
    const wrapper = join(work, 'zfs-dynamic-creator');
    await writeFile(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`);
    await chmod(wrapper, 0o755);
    const copies = join(work, 'units');
    await mkdir(copies);
    const files = (await readdir(UNITS)).filter((f) => /\.(service|timer)$/.test(f)).sort();
    expect(files).toEqual(['zfs-dynamic-creator-reconcile.service', 'zfs-dynamic-creator-reconcile.timer', 'zfs-dynamic-creator.service']);
    for (const f of files) await writeFile(join(copies, f), (await readFile(join(UNITS, f), 'utf8')).replaceAll(BIN, wrapper));
    // Documentation=man:zfs-dynamic-creator(1) is checked with man(1): the page the package installs.
    const manDir = join(work, 'man');
    await mkdir(join(manDir, 'man1'), { recursive: true });
    await copyFile(join(PROJECT, 'man', 'zfs-dynamic-creator.1'), join(manDir, 'man1', 'zfs-dynamic-creator.1'));
    const r = await execa(analyze, ['verify', ...files.map((f) => join(copies, f))], {
      reject: false,
      env: { ...process.env, MANPATH: manDir },
    });
    expect({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr }).toEqual({ exitCode: 0, stdout: '', stderr: '' });
  });

  it('are hardened as far as mounting filesystems allows, and use none of the options that would hide the mounts', async () => {
    for (const unit of ['zfs-dynamic-creator.service', 'zfs-dynamic-creator-reconcile.service']) {
      const d = await directives(join(UNITS, unit));
      const one = (key: string): string | undefined => d.get(key)?.at(-1);
      expect({
        unit,
        hardening: Object.fromEntries(
          [
            'NoNewPrivileges',
            'LockPersonality',
            'RestrictRealtime',
            'RestrictNamespaces',
            'SystemCallArchitectures',
            'RestrictAddressFamilies',
            'UMask',
          ].map((k) => [k, one(k)]),
        ),
      }).toEqual({
        unit,
        hardening: {
          NoNewPrivileges: 'yes',
          LockPersonality: 'yes',
          RestrictRealtime: 'yes',
          RestrictNamespaces: 'yes',
          SystemCallArchitectures: 'native',
          RestrictAddressFamilies: 'AF_UNIX AF_INET AF_INET6 AF_NETLINK',
          UMask: '0077',
        },
      });
      const caps = (one('CapabilityBoundingSet') ?? '').split(/\s+/).sort();
      expect({ unit, caps }).toEqual({
        unit,
        caps: [
          'CAP_CHOWN',
          'CAP_DAC_OVERRIDE',
          'CAP_DAC_READ_SEARCH',
          'CAP_FOWNER',
          'CAP_FSETID',
          'CAP_MKNOD',
          'CAP_SETFCAP',
          'CAP_SYS_ADMIN',
          'CAP_SYS_PTRACE',
        ],
      });
      expect(one('SystemCallFilter')).toMatch(/^~.*@module.*@reboot/);
      // Each of these gives the service a mount namespace of its own (kernel ZFS would mount
      // datasets nobody else sees), shuts out /dev/zfs, or stops rsync copying setuid files.
      for (const key of [
        'ProtectSystem',
        'ProtectHome',
        'PrivateTmp',
        'PrivateDevices',
        'ProtectKernelTunables',
        'ProtectKernelModules',
        'ProtectKernelLogs',
        'ProtectControlGroups',
        'ProtectProc',
        'ProtectHostname',
        'ProtectClock',
        'ReadOnlyPaths',
        'InaccessiblePaths',
        'RestrictSUIDSGID',
        'MemoryDenyWriteExecute',
        'PrivateNetwork',
        'DevicePolicy',
        'DeviceAllow',
        'MountFlags',
      ]) {
        expect({ unit, key, set: d.has(key) }).toEqual({ unit, key, set: false });
      }
      // Ordered after the pools and NFS; pulls in the pools only.
      const after = (d.get('After') ?? []).join(' ').split(/\s+/);
      const wants = (d.get('Wants') ?? []).join(' ').split(/\s+/);
      expect({ unit, after: ['zfs.target', 'zfs-mount.service', 'nfs-server.service'].every((u) => after.includes(u)) }).toEqual({
        unit,
        after: true,
      });
      expect({
        unit,
        wants: wants.includes('zfs.target') && wants.includes('zfs-mount.service') && !wants.includes('nfs-server.service'),
      }).toEqual({ unit, wants: true });
      expect({ unit, nice: one('Nice'), io: one('IOSchedulingClass') }).toEqual({ unit, nice: '5', io: 'best-effort' });
      expect(d.get('Documentation')).toEqual(['man:zfs-dynamic-creator(1)', 'file:///usr/lib/node_modules/zfs-dynamic-creator/README.md']);
      expect(d.get('ExecStartPre')).toEqual([`${BIN} check-config`]);
    }
  });

  it('do not restart on a configuration error: RestartPreventExitStatus is the usage exit code, and start attempts are limited', async () => {
    const d = await directives(join(UNITS, 'zfs-dynamic-creator.service'));
    expect(d.get('Restart')).toEqual(['on-failure']);
    expect(d.get('RestartPreventExitStatus')).toEqual([String(EXIT.usage)]);
    // A failing ExecStartPre= is not covered by RestartPreventExitStatus=: the start limit ends it.
    expect(d.get('StartLimitBurst')).toEqual(['3']);
    expect(d.get('StartLimitIntervalSec')).toEqual(['600']);
  });

  it('run only commands that exist, and check-config answers 2 for a bad config and 1 for one whose dataset is not there yet', async () => {
    const commands = buildProgram(() => undefined).commands.map((c) => c.name());
    for (const unit of ['zfs-dynamic-creator.service', 'zfs-dynamic-creator-reconcile.service']) {
      const d = await directives(join(UNITS, unit));
      for (const key of ['ExecStartPre', 'ExecStart', 'ExecReload']) {
        for (const line of d.get(key) ?? []) {
          if (!line.startsWith(BIN)) continue;
          const command = line.slice(BIN.length).trim().split(/\s+/)[0]!;
          expect({ unit, key, command, exists: commands.includes(command) }).toEqual({ unit, key, command, exists: true });
        }
      }
    }
    const stateDir = join(work, 'state');
    const good = join(work, 'good.json');
    await writeFile(good, JSON.stringify({ stateDir, roots: [{ rootfs: 'tank/runs', rootdir: work }] }));
    // Valid, but its dataset is not there (no pool here): 1, which the units restart on (the
    // pool may be imported later), unlike 2 (RestartPreventExitStatus).
    const ok = await execa(process.execPath, [CLI, '--config', good, 'check-config'], { reject: false });
    expect({ exitCode: ok.exitCode, stderr: ok.stderr }).toEqual({
      exitCode: EXIT.failed,
      stderr: expect.stringContaining(`config ${good}: roots[0].rootfs: cannot open 'tank/runs'`),
    });
    const bad = join(work, 'bad.yaml');
    await writeFile(bad, 'roots:\n  - rootfs: tank/runs\n    rootdir: [unclosed\n');
    const no = await execa(process.execPath, [CLI, '--config', bad, 'check-config'], { reject: false });
    expect({ exitCode: no.exitCode, stderr: no.stderr }).toEqual({ exitCode: EXIT.usage, stderr: expect.stringContaining(bad) });
  });

  it('systemd-analyze security rates the daemon MEDIUM at worst (9.6 UNSAFE without the hardening)', async () => {
    const analyze = await systemdAnalyze();
    const r = await execa(analyze, ['security', '--offline=true', '--no-pager', join(UNITS, 'zfs-dynamic-creator.service')], {
      reject: false,
    });
    const m = /Overall exposure level for zfs-dynamic-creator\.service: (\d+\.\d)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(6);
  });
});
