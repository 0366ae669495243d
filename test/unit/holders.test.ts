/**
 * Holders by identity: the parsers on fixtures (a fake /proc), and real processes holding files
 * of a tree from another mount namespace through a bind mount (runs as root).
 */
import { closeSync, openSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeHolders,
  holdersOf,
  makeDev,
  mountsInto,
  parseFdinfo,
  parseMaps,
  parseMountinfo,
  parseMounts,
  parseNfsdClientAddress,
  parseNfsdStates,
  treeOf,
  type HeldTree,
} from '../../src/util/holders.js';
import { openDir, treeDigest } from '../../src/util/safefs/index.js';
import { devMajorMinor } from '../helpers/devices.js';
import { InodeIndex } from '../../src/util/inodes.js';

let base: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'holders-'));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function indexOf(path: string): Promise<InodeIndex> {
  const d = await openDir(path);
  try {
    return (await treeDigest(d)).index;
  } finally {
    await d.close();
  }
}

const hex = (n: number): string => n.toString(16).padStart(2, '0');

/** The mount id of the mount `path` is on (from our own fdinfo). */
function mountIdOf(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return parseFdinfo(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')).mntId!;
  } finally {
    closeSync(fd);
  }
}

describe('InodeIndex', () => {
  it('holds a million inodes in under 10 MB and finds exactly them', () => {
    const index = new InodeIndex(42);
    const present = new Set<number>();
    let x = 12345;
    for (let i = 0; i < 1_000_000; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      index.add(x);
      present.add(x);
    }
    index.add(7);
    index.add(7);
    present.add(7);
    expect(index.size).toBe(present.size);
    expect(index.byteLength).toBeLessThanOrEqual(10 * 1024 * 1024);
    let checked = 0;
    for (const v of present) {
      if (checked++ > 50_000) break;
      expect(index.has(42, v)).toBe(true);
    }
    let misses = 0;
    for (let v = 0; v < 100_000; v++) if (!present.has(v) && index.has(42, v)) misses++;
    expect(misses).toBe(0);
    expect(index.has(43, 7)).toBe(false);
  });

  it('keeps inode numbers beyond 32 bits exact', () => {
    const index = new InodeIndex(1);
    index.add(5);
    index.add(2 ** 40 + 3);
    expect(index.has(1, 2 ** 40 + 3)).toBe(true);
    expect(index.has(1, 2 ** 40 + 2)).toBe(false);
    expect(index.has(1, 5)).toBe(true);
  });
});

describe('device numbers', () => {
  it('convert the Linux way (checked against this process own maps and mountinfo)', () => {
    for (const [ma, mi] of [
      [8, 1],
      [0, 58],
      [259, 1048575],
      [4095, 255],
      [253, 256],
    ] as const) {
      expect(devMajorMinor(makeDev(ma, mi))).toEqual({ major: ma, minor: mi });
    }
    expect(makeDev(8, 1)).toBe(0x801);
    // mountinfo: mount id -> device, checked against our own fdinfo and stat of a directory.
    const mounts = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    expect(mounts.get(mountIdOf(base))).toBe(statSync(base).dev);
    expect(parseFdinfo('pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t3\n')).toEqual({ mntId: 24, ino: 3 });
    expect(parseFdinfo('pos:\t0\nflags:\t0100000\nmnt_id:\t24\n')).toEqual({ mntId: 24, ino: undefined });
    const exe = realpathSync(process.execPath);
    const st = statSync(exe);
    const mapped = parseMaps(readFileSync('/proc/self/maps', 'utf8')).find((m) => m.path === exe);
    expect(mapped).toBeDefined();
    expect([mapped!.dev, mapped!.ino]).toEqual([st.dev, st.ino]);
    const root = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[4] === '/')!;
    const [ma, mi] = root.split(' ')[2]!.split(':').map(Number);
    expect(devMajorMinor(statSync('/').dev)).toEqual({ major: ma, minor: mi });
  });
});

describe('parsers', () => {
  it('parse /proc/PID/maps lines: hex device, decimal inode, names with spaces, anonymous mappings left out', () => {
    const text = [
      '55d0c8a4f000-55d0c8a51000 r--p 00000000 fd:01 1234567                    /usr/bin/cat',
      '7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0 ',
      '7f1c2b000000-7f1c2b001000 r--s 00001000 00:3a 42                         /data/run 7/file with spaces (deleted)',
      '7ffd5d1e0000-7ffd5d201000 rw-p 00000000 00:00 0                          [stack]',
      '7f1c2c000000-7f1c2c001000 r--p 00000000 103:1c 99',
    ].join('\n');
    expect(parseMaps(text)).toEqual([
      { dev: makeDev(0xfd, 1), ino: 1234567, path: '/usr/bin/cat' },
      { dev: makeDev(0, 0x3a), ino: 42, path: '/data/run 7/file with spaces (deleted)' },
      { dev: makeDev(0x103, 0x1c), ino: 99, path: '' },
    ]);
  });

  it('parse the NFSv4 server state lines (fs/nfsd/nfs4state.c format)', () => {
    const text = [
      '- 0x00000001a1b2c3d4e5f6a7b8c9d0e1f2: { type: open, access: rw, deny: --, superblock: "00:2f:13649", filename: "run 7/data.bin", owner: "open id:\\x00\\x00\\x00\\x01" }',
      '- 0x00000002a1b2c3d4e5f6a7b8c9d0e1f2: { type: lock, superblock: "fd:10:77", filename: "x", owner: "lock id:\\x00" }',
      '- 0x00000001a1b2c3d4e5f6a7b8c9d0e1f3: { type: deleg, access: r, superblock: "103:1c:18446744073709", filename: "y" }',
      '- 0x00000001a1b2c3d4e5f6a7b8c9d0e1f4: { type: layout, superblock: "00:2f:5", filename: "z" }',
      '',
    ].join('\n');
    expect(parseNfsdStates(text)).toEqual([
      { type: 'open', dev: makeDev(0, 0x2f), ino: 13649, filename: 'run 7/data.bin' },
      { type: 'lock', dev: makeDev(0xfd, 0x10), ino: 77, filename: 'x' },
      { type: 'deleg', dev: makeDev(0x103, 0x1c), ino: 18446744073709, filename: 'y' },
      { type: 'layout', dev: makeDev(0, 0x2f), ino: 5, filename: 'z' },
    ]);
    expect(parseNfsdClientAddress('clientid: 0x6f9e1c2a5d\naddress: "192.0.2.5:876"\nname: "Linux NFSv4.2 host"\n')).toBe('192.0.2.5:876');
  });
});

describe('holdersOf on a fake /proc', () => {
  it('finds cwd, root, fds, mappings and NFSv4 state by identity, and skips this process', async () => {
    const fake = join(base, 'proc');
    const tree = join(base, 'tree');
    const outside = join(base, 'outside');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await mkdir(outside, { recursive: true });
    await writeFile(join(tree, 'file'), 'x');
    await writeFile(join(tree, 'mapped'), 'x');
    await writeFile(join(tree, 'nfs'), 'x');
    await writeFile(join(outside, 'other'), 'x');
    const index = await indexOf(tree);
    const st = (p: string): { dev: number; ino: number } => statSync(p);
    const mm = (p: string): string => {
      const { major, minor } = devMajorMinor(st(p).dev);
      return `${hex(major)}:${hex(minor)} ${st(p).ino}`;
    };
    const proc = async (pid: number | string, comm: string, links: Record<string, string>, maps = ''): Promise<void> => {
      const d = join(fake, String(pid));
      await mkdir(join(d, 'fd'), { recursive: true });
      await writeFile(join(d, 'comm'), `${comm}\n`);
      await writeFile(join(d, 'maps'), maps);
      for (const [name, target] of Object.entries(links)) await symlink(target, join(d, name));
    };
    await proc(111, 'writer', {
      cwd: join(tree, 'sub'),
      root: '/',
      'fd/0': '/dev/null',
      'fd/3': join(tree, 'file'),
      'fd/4': join(outside, 'other'),
    });
    // 555 has fdinfo and mountinfo (the real kernel's way): the fd's link points elsewhere, but
    // fdinfo names a held inode on the tree's mount, and that is what counts. The link is never stat-ed.
    await proc(555, 'fdinfo', { cwd: '/', root: '/', 'fd/7': '/nonexistent/never-stat-ed' });
    await writeFile(join(fake, '555/mountinfo'), readFileSync('/proc/self/mountinfo'));
    await mkdir(join(fake, '555/fdinfo'));
    await writeFile(join(fake, '555/fdinfo/7'), `pos:\t0\nflags:\t02\nmnt_id:\t${mountIdOf(tree)}\nino:\t${st(join(tree, 'file')).ino}\n`);
    await proc(
      222,
      'mapper',
      { cwd: '/', root: '/' },
      `7f00-7f01 r--s 00000000 ${mm(join(tree, 'mapped'))}   /elsewhere/mapped\n7f01-7f02 r--p 00000000 ${mm(join(outside, 'other'))}   /x\n`,
    );
    await proc(333, 'idle', { cwd: outside, root: '/', 'fd/1': join(outside, 'other') });
    await proc(444, 'chrooted', { cwd: '/', root: tree });
    await proc(process.pid, 'self', { cwd: tree, root: '/', 'fd/9': join(tree, 'file') });
    await mkdir(join(fake, 'fs/nfsd/clients/7'), { recursive: true });
    await mkdir(join(fake, 'fs/nfsd/clients/8'), { recursive: true });
    const { major, minor } = devMajorMinor(st(join(tree, 'nfs')).dev);
    await writeFile(
      join(fake, 'fs/nfsd/clients/7/states'),
      `- 0x00000001aabbccddeeff001122334455: { type: open, access: rw, deny: --, superblock: "${hex(major)}:${hex(minor)}:${st(join(tree, 'nfs')).ino}", filename: "tree/nfs", owner: "o" }\n`,
    );
    await writeFile(join(fake, 'fs/nfsd/clients/7/info'), 'clientid: 0x1\naddress: "192.0.2.5:876"\n');
    await writeFile(
      join(fake, 'fs/nfsd/clients/8/states'),
      `- 0x1: { type: open, access: r-, deny: --, superblock: "${hex(major)}:${hex(minor)}:${st(join(outside, 'other')).ino}", filename: "o", owner: "o" }\n`,
    );

    const found = await holdersOf(index, { procRoot: fake });
    const simple = found.map((h) => [h.pid, h.command, h.how, h.isDirectory]).sort((a, b) => String(a).localeCompare(String(b)));
    expect(simple).toEqual(
      [
        [0, 'nfsd (NFSv4 client 192.0.2.5:876, open)', 'nfsd', false],
        [111, 'writer', 'cwd', true],
        [111, 'writer', 'fd', false],
        [222, 'mapper', 'map', false],
        [444, 'chrooted', 'root', true],
        [555, 'fdinfo', 'fd', false],
      ].sort((a, b) => String(a).localeCompare(String(b))),
    );
    expect(found.find((h) => h.how === 'map')!.path).toBe('/elsewhere/mapped');
    const line = describeHolders(found);
    expect(line).toContain('writer[111] (cwd');
    expect(line).toContain('nfsd (NFSv4 client 192.0.2.5:876, open) (tree/nfs)');
    expect(await holdersOf(index, { procRoot: join(base, 'no-such-proc') })).toEqual([]);
  });
});

describe('holdersOf where stat and mountinfo disagree on devices', () => {
  it('matches by stat when an indexed device is on no mount (btrfs subvolumes, overlayfs)', async () => {
    const fake = join(base, 'proc2');
    const tree = join(base, 'tree2');
    await mkdir(join(fake, '777/fd'), { recursive: true });
    await mkdir(join(fake, '777/fdinfo'), { recursive: true });
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'f'), '');
    await symlink(join(tree, 'f'), join(fake, '777/fd/3'));
    await writeFile(join(fake, '777/mountinfo'), readFileSync('/proc/self/mountinfo'));
    // fdinfo names another inode than the link reaches.
    await writeFile(join(fake, '777/fdinfo/3'), `mnt_id:\t${mountIdOf(tree)}\nino:\t${statSync(join(tree, 'f')).ino + 1}\n`);
    const index = await indexOf(tree);
    expect(await holdersOf(index, { procRoot: fake })).toEqual([]);
    const unmounted = new InodeIndex(makeDev(4095, 999999));
    const found = await holdersOf([index, unmounted], { procRoot: fake });
    expect(found.map((h) => [h.pid, h.how])).toEqual([[777, 'fd']]);
  });
});

describe('holdersOf on real processes', () => {
  /** Starts a holder and waits for its first line of output. */
  async function started(child: ResultPromise): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.catch(reject);
    });
  }

  it('sees a writer in another mount namespace, through a bind mount, by its fd and cwd', async () => {
    const tree = join(base, 'ns-tree');
    const elsewhere = join(base, 'ns-elsewhere');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await mkdir(elsewhere, { recursive: true });
    await writeFile(join(tree, 'log'), '');
    const index = await indexOf(tree);
    const script =
      'import sys,time\nf=open(sys.argv[1],"a")\nf.write("line\\n"); f.flush()\nprint("ready", flush=True)\nsys.stdin.read()\n';
    const child = execa(
      'unshare',
      [
        '-m',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount --bind "$1" "$2" && cd "$2/sub" && exec /usr/bin/python3 -c "$3" "$2/log"',
        'sh',
        tree,
        elsewhere,
        script,
      ],
      { stdin: 'pipe', reject: false },
    );
    try {
      await started(child);
      const found = (await holdersOf(index)).filter((h) => h.pid === child.pid);
      expect(found.map((h) => h.how).sort()).toEqual(['cwd', 'fd']);
      // The holder sees its own paths; a path comparison with ours could not have matched.
      expect(found.find((h) => h.how === 'fd')!.path).toBe(join(elsewhere, 'log'));
      expect(found.find((h) => h.how === 'cwd')!.isDirectory).toBe(true);
    } finally {
      child.stdin!.end();
      await child;
    }
    expect(readFileSync(join(tree, 'log'), 'utf8')).toBe('line\n');
  });

  it('sees a mapping whose descriptor was closed, on another filesystem (tmpfs, anonymous device)', async () => {
    const tree = join(base, 'map-tree');
    await mkdir(tree, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tree]);
    try {
      await writeFile(join(tree, 'data'), Buffer.alloc(8192, 1));
      const index = await indexOf(tree);
      // Python's mmap keeps a dup of the descriptor: close every descriptor on the file, keep the mapping.
      const script = [
        'import mmap,os,sys',
        'f=open(sys.argv[1],"rb")',
        'm=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ)',
        'f.close()',
        'for fd in os.listdir("/proc/self/fd"):',
        '    try:',
        '        if os.readlink("/proc/self/fd/"+fd)==sys.argv[1]: os.close(int(fd))',
        '    except OSError: pass',
        'print("ready", flush=True)',
        'sys.stdin.read()',
        'print(m[0])',
      ].join('\n');
      const child = execa('/usr/bin/python3', ['-c', script, join(tree, 'data')], { cwd: '/', stdin: 'pipe', reject: false });
      try {
        await started(child);
        const found = (await holdersOf(index)).filter((h) => h.pid === child.pid);
        expect(found.map((h) => h.how)).toEqual(['map']);
      } finally {
        child.stdin!.end();
        await child;
      }
    } finally {
      await execa('umount', ['-l', tree]);
    }
  });

  it('does not report this process, and reports nothing for a tree nobody holds', async () => {
    const tree = join(base, 'self-tree');
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, 'f'), '');
    const fd = openSync(join(tree, 'f'), 'r');
    try {
      expect(await holdersOf(await indexOf(tree))).toEqual([]);
    } finally {
      closeSync(fd);
    }
  });
});

describe('mounts of a tree', () => {
  const dev = makeDev(0, 52);
  const line = (id: number, root: string, point: string, opts = 'rw,relatime'): string =>
    `${id} 20 0:52 ${root} ${point} ${opts} shared:1 - zfs tank/home rw`;

  it('parse mountinfo: root and mount point unescaped (space, tab, newline, backslash), read-only per mount', () => {
    const text = [
      line(30, '/', '/tank/home'),
      line(31, '/.zfs-dynamic-creator/a\\040b.orig/x\\011y\\012z\\134', '/mnt/v\\040w', 'ro,nosuid'),
      '',
    ].join('\n');
    expect(parseMounts(text)).toEqual([
      { id: 30, dev, root: '/', mountpoint: '/tank/home', readOnly: false },
      { id: 31, dev, root: '/.zfs-dynamic-creator/a b.orig/x\ty\nz\\', mountpoint: '/mnt/v w', readOnly: true },
    ]);
    expect(parseMountinfo(text)).toEqual(
      new Map([
        [30, dev],
        [31, dev],
      ]),
    );
    expect(parseFdinfo('pos:\t0\nflags:\t02\nmnt_id:\t10\nino:\t52024\nscm_fds: 2\n')).toEqual({ mntId: 10, ino: 52024, scmFds: 2 });
  });

  it('a mount of the tree or inside it writes into it; one above it, beside it, of another filesystem or deleted does not', () => {
    const tree: HeldTree = { dev, path: '/.zfs-dynamic-creator/abc.orig', uid: 65534 };
    const m = (root: string, d = dev): boolean => mountsInto({ id: 1, dev: d, root, mountpoint: '/v', readOnly: false }, tree);
    expect(m('/.zfs-dynamic-creator/abc.orig')).toBe(true);
    expect(m('/.zfs-dynamic-creator/abc.orig/sub/deeper')).toBe(true);
    // Above it: the way down passes the root-only holding directory.
    expect(m('/')).toBe(false);
    expect(m('/.zfs-dynamic-creator')).toBe(false);
    // A name that only starts the same.
    expect(m('/.zfs-dynamic-creator/abc.origin')).toBe(false);
    expect(m('/alice')).toBe(false);
    expect(m('/.zfs-dynamic-creator/abc.orig', makeDev(0, 53))).toBe(false);
    expect(m('/.zfs-dynamic-creator/abc.orig/gone//deleted')).toBe(false);
    // A tree that is a whole filesystem: every mount of it.
    expect(mountsInto({ id: 1, dev, root: '/x', mountpoint: '/v', readOnly: false }, { dev, path: '/', uid: 0 })).toBe(true);
  });

  it('treeOf: the path inside its filesystem follows a rename of the directory', async () => {
    const fsTop = join(base, 'treeof');
    await mkdir(fsTop, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', fsTop]);
    try {
      await mkdir(join(fsTop, 'alice', 'sub'), { recursive: true });
      await mkdir(join(fsTop, 'hold'));
      const fd = openSync(join(fsTop, 'alice'), 'r');
      try {
        expect(await treeOf(fd)).toEqual({ dev: statSync(fsTop).dev, path: '/alice', uid: 0 });
        await rename(join(fsTop, 'alice'), join(fsTop, 'hold', 'a b.orig'));
        expect((await treeOf(fd))?.path).toBe('/hold/a b.orig');
      } finally {
        closeSync(fd);
      }
    } finally {
      await execa('umount', ['-l', fsTop]);
    }
  });
});

describe('holders without a descriptor, on real processes', () => {
  /** A tmpfs at `top` with the user's directory `alice` (nobody's) and a root-only `hold`. */
  async function layout(name: string): Promise<{ top: string; alice: string; view: string; done: () => Promise<void> }> {
    const top = join(base, name);
    const view = join(base, `${name}-view`);
    await mkdir(top, { recursive: true });
    await mkdir(view, { recursive: true });
    await chmod(base, 0o755);
    await chown(view, 65534, 65534);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=755', 'tmpfs', top]);
    const alice = join(top, 'alice');
    await mkdir(join(alice, 'sub'), { recursive: true });
    await writeFile(join(alice, 'sub', 'f'), 'x');
    await execa('chown', ['-R', '65534:65534', alice]);
    await mkdir(join(top, 'hold'), { mode: 0o700 });
    return { top, alice, view, done: () => execa('umount', ['-l', top]).then(() => undefined) };
  }

  /** nobody, in a user+mount namespace of their own, runs `script` (sh) and then waits for stdin to close. */
  function asNobodyInNamespace(script: string, ...args: string[]): ResultPromise {
    return execa(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--',
        'unshare',
        '-Urm',
        '--',
        'sh',
        '-c',
        `${script} && echo ready && exec cat`,
        'sh',
        ...args,
      ],
      {
        cwd: '/',
        stdin: 'pipe',
        reject: false,
      },
    );
  }

  async function started(child: ResultPromise): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      void child.then((r) => reject(new Error(`exited: ${String(r.stderr)}`)));
    });
  }

  async function heldBy(tree: string, pid: number | undefined): Promise<string[]> {
    const fd = openSync(tree, 'r');
    try {
      const t = await treeOf(fd);
      return (await holdersOf(await indexOf(tree), { trees: t ? [t] : [] })).filter((h) => h.pid === pid).map((h) => `${h.how} ${h.path}`);
    } finally {
      closeSync(fd);
    }
  }

  it('a bind mount of the directory (or inside it) in another mount namespace, no descriptor held: a holder, also after the directory is moved into a root-only one; a bind of the root above is not', async () => {
    const { top, alice, view, done } = await layout('bind');
    try {
      const child = asNobodyInNamespace('mount --bind "$1/sub" "$2" && mount --bind "$3" /mnt', alice, view, top);
      try {
        await started(child);
        expect(await heldBy(alice, child.pid)).toEqual([`mount ${view}`]);
        // Without the tree: inodes only (the mount holds no descriptor).
        expect((await holdersOf(await indexOf(alice))).filter((h) => h.pid === child.pid)).toEqual([]);
        await rename(alice, join(top, 'hold', 'x.orig'));
        const moved = join(top, 'hold', 'x.orig');
        expect(await heldBy(moved, child.pid)).toEqual([`mount ${view}`]);
        const line = describeHolders(
          (await holdersOf(await indexOf(moved), { trees: [(await treeOfPath(moved))!] })).filter((h) => h.pid === child.pid),
        );
        expect(line).toBe(`cat[${child.pid}] (a mount of it at ${view} in its mount namespace)`);
        // The bind of the whole tmpfs (/mnt in its namespace) reaches it only through the root-only directory.
        const write = await execa(
          'setpriv',
          [
            '--reuid=65534',
            '--regid=65534',
            '--clear-groups',
            '--',
            'nsenter',
            '-t',
            String(child.pid),
            '-U',
            '-m',
            '--preserve-credentials',
            '--',
            'sh',
            '-c',
            'echo late > /mnt/hold/x.orig/late',
          ],
          { reject: false },
        );
        expect(write.exitCode).not.toBe(0);
        expect(write.stderr).toMatch(/Permission denied/);
      } finally {
        child.stdin!.end();
        await child;
      }
    } finally {
      await done();
    }
  });

  it('a read-only bind mount: a holder in a user namespace (its owner can make it writable), not in ours', async () => {
    const { alice, view, done } = await layout('robind');
    try {
      const user = asNobodyInNamespace('mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"', alice, view);
      const ours = execa(
        'unshare',
        [
          '-m',
          '--propagation',
          'private',
          '--',
          'sh',
          '-c',
          'mount --bind -o ro "$1" "$2" && mount -o remount,bind,ro "$2" && echo ready && exec cat',
          'sh',
          alice,
          view,
        ],
        { stdin: 'pipe', reject: false },
      );
      try {
        await Promise.all([started(user), started(ours)]);
        expect(await heldBy(alice, user.pid)).toEqual([`mount ${view}`]);
        expect(await heldBy(alice, ours.pid)).toEqual([]);
      } finally {
        user.stdin!.end();
        ours.stdin!.end();
        await Promise.all([user, ours]);
      }
    } finally {
      await done();
    }
  });

  it('a descriptor on a bind mount unmounted lazily (its mount in no mountinfo): still a holder', async () => {
    const { alice, view, done } = await layout('lazy');
    try {
      const child = asNobodyInNamespace('mount --bind "$1" "$2" && exec 7>>"$2/sub/f" && umount -l "$2"', alice, view);
      try {
        await started(child);
        expect((await heldBy(alice, child.pid)).map((h) => h.split(' ')[0])).toEqual(['fd']);
      } finally {
        child.stdin!.end();
        await child;
      }
    } finally {
      await done();
    }
  });

  it("a mount namespace no process is in any more, kept by a descriptor: counted for its keeper's trees (its mounts cannot be read)", async () => {
    const { alice, view, done } = await layout('keptns');
    try {
      const inside = asNobodyInNamespace('mount --bind "$1" "$2"', alice, view);
      await started(inside);
      const keeper = execa(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          '--',
          'sh',
          '-c',
          'exec 8<"/proc/$1/ns/mnt" && echo ready && exec cat',
          'sh',
          String(inside.pid),
        ],
        { cwd: '/', stdin: 'pipe', reject: false },
      );
      try {
        await started(keeper);
        // While a process is in it, its mountinfo is read: the mount itself is the holder.
        expect(await heldBy(alice, inside.pid)).toEqual([`mount ${view}`]);
        expect(await heldBy(alice, keeper.pid)).toEqual([]);
        inside.stdin!.end();
        await inside;
        const held = await heldBy(alice, keeper.pid);
        expect(held).toHaveLength(1);
        expect(held[0]).toMatch(/^namespace mnt:\[\d+\]$/);
        // Another user's tree: not counted.
        await execa('chown', ['65533', alice]);
        expect(await heldBy(alice, keeper.pid)).toEqual([]);
      } finally {
        inside.stdin!.end();
        keeper.stdin!.end();
        await Promise.all([inside, keeper]);
      }
    } finally {
      await done();
    }
  });

  it("descriptors in flight (SCM_RIGHTS, not yet received): counted for the owner's processes, not another user's", async () => {
    const { alice, done } = await layout('inflight');
    const script = [
      'import array, os, socket, sys',
      'a, b = socket.socketpair()',
      'fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)',
      'a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])',
      'os.close(fd)',
      'print("ready", flush=True)',
      'sys.stdin.read()',
    ].join('\n');
    try {
      const owner = execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', '/usr/bin/python3', '-c', script, alice], {
        cwd: '/',
        stdin: 'pipe',
        reject: false,
      });
      const other = execa('setpriv', ['--reuid=65533', '--regid=65533', '--clear-groups', '--', '/usr/bin/python3', '-c', script, '/'], {
        cwd: '/',
        stdin: 'pipe',
        reject: false,
      });
      try {
        await Promise.all([started(owner), started(other)]);
        expect(await heldBy(alice, owner.pid)).toEqual(['inflight a socket']);
        expect(await heldBy(alice, other.pid)).toEqual([]);
      } finally {
        owner.stdin!.end();
        other.stdin!.end();
        await Promise.all([owner, other]);
      }
    } finally {
      await done();
    }
  });
});

async function treeOfPath(path: string): Promise<HeldTree | undefined> {
  const fd = openSync(path, 'r');
  try {
    return await treeOf(fd);
  } finally {
    closeSync(fd);
  }
}
