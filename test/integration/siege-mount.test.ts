/**
 * Issue 19, items 1-3: nothing mounted or made where a user can redirect it. The attacker is the
 * owner of the directory being converted (nobody, uid 65534, through setpriv), the races are made
 * deterministic with the fault-injection plugin's pauses (signal SIGCONT: the job goes on).
 *
 * 1. After the original is moved aside, a symbolic link planted at the original path: mount(2)
 *    follows links, so `zfs` would mount the user's dataset wherever it points (a directory on
 *    root's PATH: root code execution). The tool makes the mountpoint itself, root's, right after
 *    the move aside, in a sticky root where nobody else can rename or remove it.
 * 2, 3. A root others may write into without the sticky bit (0777, 2775): the root-owned holding
 *    directory can be renamed away and a link put in its place, to have it chowned or the staging
 *    dataset mounted through it. Such a root is refused, at start and by doctor, with one line
 *    naming chmod +t.
 *
 * Also in the OpenZFS lane (scripts/openzfs-lane.sh): mounts are the kernel's there.
 */
import { chmod, chown, lstat, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliLogged, createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { leftovers, helperPath } from '../helpers/state.js';
import { asNobody, isMountpoint, makeUserDir, missingFiles, PYTHON } from '../helpers/attacker.js';
import { scaled } from '../helpers/time.js';
import { writeNamedConfig } from './safety-helpers.js';

let p: TestPool;
const places: string[] = [];

beforeAll(async () => {
  p = await createPool('siegemount');
});
afterAll(async () => {
  // The pool first: on the old code a dataset was mounted through the link, on a target.
  await p?.destroy();
  for (const place of places) await rm(place, { recursive: true, force: true });
});

/** A root-owned empty directory outside every root (such as one on root's PATH). */
async function target(): Promise<string> {
  const dir = await mkdtemp('/root/zdc-target-');
  places.push(dir);
  return dir;
}

/** A pause (not a crash) at a step, for one directory. */
function pauseAt(killAt: string, when: 'before' | 'after', name: string, seconds = scaled(3000) / 1000): unknown {
  return ['fault-injection', { killAt, when, signal: 'SIGCONT', pauseSeconds: seconds, names: [name] }];
}

function spawn(args: string[]) {
  return cliLogged(args, { stateDir: p.stateDir });
}

/** As nobody: move whatever is at `path` away (or remove it), then put a symlink to `to` there. Prints what each try gave. */
const PLANT = `
import errno, os, sys
path, to = sys.argv[1], sys.argv[2]
out = []
def attempt(label, f):
    try:
        f(); out.append(label + ':ok')
    except OSError as e:
        out.append(label + ':' + errno.errorcode[e.errno])
attempt('rename', lambda: os.rename(path, path + '.away'))
attempt('rmdir', lambda: os.rmdir(path))
attempt('symlink', lambda: os.symlink(to, path))
print(' '.join(out))
`;

async function plant(path: string, to: string): Promise<string> {
  const [command, args] = asNobody(PYTHON, ['-c', PLANT, path, to]);
  const r = await execa(command, args, { cwd: '/' });
  return r.stdout.trim();
}

/** Removes what the attackers left in the root (links, moved-away holding directories). */
async function tidy(): Promise<void> {
  for (const entry of await readdir(p.mount)) {
    const path = join(p.mount, entry);
    if (entry.startsWith('.zfs-dynamic-creator.') || (entry === '.zfs-dynamic-creator' && (await lstat(path)).isSymbolicLink()))
      await rm(path, { recursive: true, force: true });
  }
}

async function doctorCheck(config: string, check: string): Promise<{ status: string; detail: string } | undefined> {
  const r = await cli(['--config', config, 'doctor', '--json'], { stateDir: p.stateDir });
  return (JSON.parse(r.stdout) as { checks: { check: string; status: string; detail: string }[] }).checks.find((c) => c.check === check);
}

describe('a root that lets users rename what they do not own (items 2 and 3)', () => {
  it('0777: the holding directory swapped for a link before zfs mounts the staging dataset in it: refused at start and by doctor, nothing mounted or changed outside', async () => {
    await chmod(p.mount, 0o777);
    const name = 'swapped-holding';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 4 });
    const elsewhere = await target();
    // Another user's file outside the root, which a chown through the link would take.
    const victimDir = await target();
    await chmod(victimDir, 0o755);
    const victim = join(victimDir, 'theirs');
    await writeFile(victim, 'theirs\n');
    await chown(victim, 4242, 4242);
    await chmod(victim, 0o644);
    const config = await writeNamedConfig(p, 'holding.json', fastPlugins({ more: [pauseAt('provision/create', 'before', name)] }));
    const h = spawn(['--config', config, 'handle', dir]);
    // While the job waits before `zfs create`, the attacker puts a link where the holding directory was.
    let planted = '';
    for (const deadline = Date.now() + scaled(20_000); h.child.exitCode === null && Date.now() < deadline; await sleep(20)) {
      if (/fault injection: pausing/.test(h.out.log)) {
        planted = await plant(join(p.mount, '.zfs-dynamic-creator'), elsewhere);
        break;
      }
    }
    // A second attacker races the holding directory's making for the chown (item 2), through two more runs.
    const race = `
import os, sys, time
h, victim, end = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
i = 0
while time.time() < end:
    try: os.rename(h, h + '.stolen%d' % i); i += 1
    except OSError: pass
    try: os.symlink(victim, h)
    except OSError: pass
    try: os.unlink(h)
    except OSError: pass
`;
    const r = await h.child;
    const [command, args] = asNobody(PYTHON, ['-c', race, join(p.mount, '.zfs-dynamic-creator'), victim, String(scaled(4000) / 1000)]);
    const racer = execa(command, args, { cwd: '/', reject: false });
    const again = [];
    for (let i = 0; i < 2; i++) again.push(await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir }));
    await racer;

    // Nothing made or mounted through the link, nothing changed outside the root.
    expect(await readdir(elsewhere)).toEqual([]);
    expect(await isMountpoint(elsewhere, '/root')).toBe(false);
    const v = await stat(victim);
    expect([v.uid, v.gid, v.mode & 0o7777]).toEqual([4242, 4242, 0o644]);
    // Because the root was refused before anything was made in it, with one line naming the fix.
    expect(r.exitCode).not.toBe(0);
    const line = `the root "${p.mount}" is writable by group and others without the sticky bit (mode 0777): they could rename what the tool makes in it; run chmod +t "${p.mount}" (everyone who can make folders there still can), or chmod go-w`;
    expect(r.stderr).toContain(line);
    expect(planted).toBe('');
    for (const a of again) expect(a.stderr).toContain(line);
    // Left as it was, at its path.
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await isMountpoint(dir, p.mount)).toBe(false);
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);
    expect(await doctorCheck(config, 'roots[0].mode')).toEqual({ check: 'roots[0].mode', status: 'fail', detail: line });
  });

  it('2775 is refused the same way; chmod +t (3775) converts', async () => {
    await tidy();
    await chmod(p.mount, 0o2775);
    const name = 'group root';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 3 });
    const config = await writeNamedConfig(p, 'group.json', fastPlugins());
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`the root "${p.mount}" is writable by group without the sticky bit (mode 2775)`);
    expect(r.stderr).toContain(`run chmod +t "${p.mount}"`);
    expect(await isMountpoint(dir, p.mount)).toBe(false);
    await chmod(p.mount, 0o3775);
    expect((await doctorCheck(config, 'roots[0].mode'))?.status).toBe('ok');
    const ok = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(await isMountpoint(dir, p.mount)).toBe(true);
    expect(await missingFiles(dir, files)).toEqual([]);
    const holding = await lstat(join(p.mount, '.zfs-dynamic-creator'));
    expect([holding.isDirectory(), holding.uid, holding.mode & 0o7777]).toEqual([true, 0, 0o700]);
  });
});

describe('a symbolic link planted at the original path (item 1, 1777 root)', () => {
  beforeAll(async () => {
    await tidy();
    await chmod(p.mount, 0o1777);
  });

  it('in the instant before the mount: the link cannot be made, the dataset is mounted at its path and nowhere else', async () => {
    const name = 'planted';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 5, sub: 3 });
    const onPath = await target();
    const config = await writeNamedConfig(p, 'planted.json', fastPlugins({ more: [pauseAt('swap/mount-in-place', 'before', name)] }));
    const h = spawn(['--config', config, 'handle', dir]);
    await h.waitFor(/fault injection: pausing/);
    const tried = await plant(dir, onPath);
    const r = await h.child;

    expect(await isMountpoint(onPath, '/root')).toBe(false);
    expect(await readdir(onPath)).toEqual([]);
    // The path was the tool's own directory: not the user's to move, remove or replace.
    expect(tried).toBe('rename:EPERM rmdir:EPERM symlink:EEXIST');
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect((await lstat(dir)).isDirectory()).toBe(true);
    expect(await isMountpoint(dir, p.mount)).toBe(true);
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/${name}`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });

  it('in the instant after the move aside: the job stops before its commit point with both kept, and recover puts the original back once the link is gone', async () => {
    const name = 'planted early';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 4 });
    const onPath = await target();
    const config = await writeNamedConfig(p, 'early.json', fastPlugins({ more: [pauseAt('swap/move-aside', 'after', name)] }));
    const h = spawn(['--config', config, 'handle', dir]);
    await h.waitFor(/fault injection: pausing/);
    expect(await plant(dir, onPath)).toBe('rename:ENOENT rmdir:ENOENT symlink:ok');
    const r = await h.child;

    expect(r.exitCode).not.toBe(0);
    expect(String(r.stderr)).toMatch(/was made again while the original was being moved aside/);
    expect(await isMountpoint(onPath, '/root')).toBe(false);
    expect(await readdir(onPath)).toEqual([]);
    expect((await lstat(dir)).isSymbolicLink()).toBe(true);
    expect(await missingFiles(helperPath(p, name, 'orig'), files)).toEqual([]);
    expect((await datasets(p.pool)).find((d) => d.name === `${p.pool}/${name}`)?.mountpoint).not.toBe(dir);

    await rm(dir);
    const rec = await cli(['--config', config, 'recover'], { stateDir: p.stateDir });
    expect(rec.exitCode, rec.stderr).toBe(0);
    expect(await isMountpoint(dir, p.mount)).toBe(false);
    expect(await missingFiles(dir, files)).toEqual([]);
    expect(await leftovers(p)).toEqual([]);
  });

  it('killed right after the tool made the mountpoint (before the commit): recover removes its empty mountpoint and puts the original back', async () => {
    const name = 'killed at the mountpoint';
    const dir = join(p.mount, name);
    const files = await makeUserDir(dir, { '': 4 });
    const config = await writeNamedConfig(
      p,
      'killed.json',
      fastPlugins({ more: [['fault-injection', { killAt: 'swap/make-mountpoint', when: 'after', names: [name] }]] }),
    );
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).not.toBe(0);
    const made = await lstat(dir);
    expect([made.isDirectory(), made.uid, made.mode & 0o7777]).toEqual([true, 0, 0o700]);
    const rec = await cli(['--config', config, 'recover'], { stateDir: p.stateDir });
    expect(rec.exitCode, rec.stderr).toBe(0);
    expect(rec.stdout + rec.stderr).toMatch(/rolled back/);
    expect(await missingFiles(dir, files)).toEqual([]);
    expect((await lstat(dir)).uid).toBe(65534);
    expect(await leftovers(p)).toEqual([]);
  });
});
