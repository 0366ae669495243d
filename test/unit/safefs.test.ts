/**
 * Descriptor-based walks, removal and copies in trees a hostile user controls (runs as root;
 * the attacker runs as nobody through setpriv). No ZFS needed: tmpfs mounts stand for "another
 * filesystem inside the tree".
 */
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  copyEntry,
  CrossDeviceError,
  displayPath,
  ensureDir,
  IdentityError,
  NotADirectoryError,
  openChild,
  openDir,
  relFromBuffer,
  relToBuffer,
  removeTree,
  setMetadata,
  statAt,
  treeDigest,
  TreeChangedError,
  UnsupportedEntryError,
  walk,
  walkPair,
  type DirRef,
  type EntryInfo,
} from '../../src/util/safefs/index.js';
import { relFromText } from '../helpers/names.js';

const NOBODY = 65534;
let base: string;
const mounts: string[] = [];
const opened: DirRef[] = [];

async function dir(path: string | Buffer): Promise<DirRef> {
  const d = await openDir(path);
  opened.push(d);
  return d;
}

/** Runs a python3 script as nobody (the attacker). */
async function asNobody(script: string, ...args: string[]): Promise<string> {
  const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', '/usr/bin/python3', '-c', script, ...args]);
  return r.stdout;
}

/** Every entry below `root` by a plain recursive reference walk (trusted paths), as latin1 rels. */
function reference(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const rec = (rel: Buffer[]): void => {
    const p = Buffer.concat([Buffer.from(root), ...rel.flatMap((r) => [Buffer.from('/'), r])]);
    const st = lstatSync(p);
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    out.set(rel.map(relFromBuffer).join('/'), type);
    if (st.isDirectory()) for (const n of readdirSync(p, { encoding: 'buffer' })) rec([...rel, n]);
  };
  rec([]);
  return out;
}

async function mountTmpfs(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', path]);
  mounts.push(path);
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'safefs-'));
  await chmod(base, 0o755);
});

afterEach(async () => {
  for (const d of opened.splice(0)) await d.close();
  for (const m of mounts.splice(0).reverse()) await execa('umount', ['-l', m]).catch(() => undefined);
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

let n = 0;
async function fresh(): Promise<string> {
  const d = join(base, `t${n++}`);
  await mkdir(d);
  return d;
}

const RAW = Buffer.from([0x66, 0xff, 0xfe, 0x0a, 0x2d]); // "f\xff\xfe\n-": not UTF-8, a newline, a dash

describe('names', () => {
  it('round-trips raw bytes through latin1 strings', () => {
    const s = relFromBuffer(RAW);
    expect(relToBuffer(s).equals(RAW)).toBe(true);
    expect(relFromText('é/x')).toBe(Buffer.from('é/x', 'utf8').toString('latin1'));
    expect(displayPath(relFromText('é/x'))).toBe('é/x');
    expect(() => relToBuffer('€')).toThrow(TypeError);
  });
});

describe('walk', () => {
  it.each([false, true])('reports every entry once, raw names included, never following a symlink (syncStat %s)', async (syncStat) => {
    const root = await fresh();
    const outside = await fresh();
    await writeFile(join(outside, 'secret'), 'x');
    await mkdir(join(root, 'a/b/c'), { recursive: true });
    await writeFile(join(root, 'a/b/c/deep'), 'deep');
    await writeFile(join(root, 'top'), '12345');
    writeFileSync(Buffer.concat([Buffer.from(`${root}/a/`), RAW]), 'raw');
    mkdirSync(Buffer.concat([Buffer.from(`${root}/`), RAW]));
    writeFileSync(Buffer.concat([Buffer.from(`${root}/`), RAW, Buffer.from('/inner')]), 'in');
    await symlink(outside, join(root, 'link'));
    await symlink('/nonexistent', join(root, 'a/dangling'));
    for (let i = 0; i < 300; i++) await writeFile(join(root, 'a/b', `f${i}`), String(i));

    const seen = new Map<string, EntryInfo>();
    const r = await walk(
      await dir(root),
      (e) => {
        expect(seen.has(e.rel)).toBe(false);
        seen.set(e.rel, e);
      },
      { concurrency: 4, syncStat },
    );
    const ref = reference(root);
    expect(new Set(seen.keys())).toEqual(new Set(ref.keys()));
    for (const [rel, type] of ref) expect(seen.get(rel)!.type).toBe(type);
    expect(r.entries).toBe(ref.size);
    expect(seen.get('')!.type).toBe('dir');
    expect(seen.get('link')!.target).toBe(outside);
    expect([...seen.keys()].some((k) => k.includes('secret'))).toBe(false);
    const raw = relFromBuffer(RAW);
    expect(seen.get(`a/${raw}`)!.size).toBe(3);
    expect(seen.get(`${raw}/inner`)!.name).toBe('inner');
    expect(seen.get('top')!.size).toBe(5);
    expect(r.bytes).toBe([...seen.values()].filter((e) => e.type === 'file').reduce((s, e) => s + e.size, 0));
  });

  it('reports another filesystem inside the tree without entering it', async () => {
    const root = await fresh();
    await mountTmpfs(join(root, 'mnt'));
    await writeFile(join(root, 'mnt/inside'), 'x');
    const seen: EntryInfo[] = [];
    await walk(await dir(root), (e) => void seen.push(e));
    expect(seen.find((e) => e.rel === 'mnt')!.crossDevice).toBe(true);
    expect(seen.some((e) => e.rel === 'mnt/inside')).toBe(false);
  });

  it('refuses a bind mount of the same filesystem inside the tree', async () => {
    const root = await fresh();
    const other = await fresh();
    await writeFile(join(other, 'theirs'), 'x');
    await mkdir(join(root, 'bound'));
    await execa('mount', ['--bind', other, join(root, 'bound')]);
    mounts.push(join(root, 'bound'));
    expect(statSync(join(root, 'bound')).dev).toBe(statSync(root).dev);
    await expect(walk(await dir(root), () => undefined)).rejects.toBeInstanceOf(CrossDeviceError);
  });

  it.each([false, true])(
    'throws TreeChangedError when a directory is swapped between listing and descent (syncStat %s)',
    async (syncStat) => {
      const root = await fresh();
      await mkdir(join(root, 'a'));
      await writeFile(join(root, 'a/f'), 'x');
      const err = await walk(
        await dir(root),
        async (e) => {
          if (e.rel === 'a') {
            await rename(join(root, 'a'), join(root, 'a.away'));
            await mkdir(join(root, 'a'));
          }
        },
        { syncStat },
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TreeChangedError);
      expect(err).toBeInstanceOf(IdentityError);
    },
  );

  it('throws TreeChangedError when a directory is swapped for a symlink between listing and descent', async () => {
    const root = await fresh();
    const outside = await fresh();
    await writeFile(join(outside, 'secret'), 'x');
    await mkdir(join(root, 'a'));
    const seen: string[] = [];
    const err = await walk(await dir(root), async (e) => {
      seen.push(e.rel);
      if (e.rel === 'a') {
        await rename(join(root, 'a'), join(root, 'a.away'));
        await symlink(outside, join(root, 'a'));
      }
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TreeChangedError);
    expect(seen).not.toContain('a/secret');
  });

  it('stops on an aborted signal', async () => {
    const root = await fresh();
    await mkdir(join(root, 'a'));
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(walk(await dir(root), () => undefined, { signal: ac.signal })).rejects.toThrow('stop');
  });
});

describe('openDir', () => {
  it('refuses a symlink and a wrong identity with clear errors', async () => {
    const root = await fresh();
    await mkdir(join(root, 'd'));
    await symlink(join(root, 'd'), join(root, 'l'));
    await writeFile(join(root, 'f'), '');
    const e1 = await openDir(join(root, 'l')).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(NotADirectoryError);
    expect((e1 as NotADirectoryError).actualType).toBe('symlink');
    expect((e1 as Error).message).toContain('symbolic link');
    const r = await dir(root);
    await expect(openChild(r, 'l')).rejects.toBeInstanceOf(NotADirectoryError);
    await expect(openChild(r, 'f')).rejects.toBeInstanceOf(NotADirectoryError);
    await expect(openChild(r, '..')).rejects.toBeInstanceOf(TypeError);
    await expect(openChild(r, 'a/b')).rejects.toBeInstanceOf(TypeError);
    const other = statSync(root);
    await expect(openDir(join(root, 'd'), { dev: other.dev, ino: other.ino })).rejects.toBeInstanceOf(IdentityError);
  });

  it('keeps working through the descriptor when the directory is renamed and replaced by a symlink', async () => {
    const root = await fresh();
    const outside = await fresh();
    await writeFile(join(outside, 'f'), 'outside');
    await mkdir(join(root, 'd'));
    await writeFile(join(root, 'd/f'), 'inside');
    const d = await dir(join(root, 'd'));
    await rename(join(root, 'd'), join(root, 'moved'));
    await symlink(outside, join(root, 'd'));
    expect(readFileSync(d.at('f'), 'utf8')).toBe('inside');
    expect((await statAt(d, 'f')).size).toBe(6);
  });
});

describe('walkPair', () => {
  it('gives the union once, descending only where both sides are directories', async () => {
    const a = await fresh();
    const b = await fresh();
    for (const r of [a, b]) {
      await mkdir(join(r, 'both/sub'), { recursive: true });
      await writeFile(join(r, 'both/sub/same'), 'same');
    }
    await writeFile(join(a, 'both/only-a'), 'a');
    await writeFile(join(b, 'both/only-b'), 'b');
    await mkdir(join(a, 'tree-a/x'), { recursive: true });
    await writeFile(join(a, 'tree-a/x/f'), '');
    await mkdir(join(a, 'dir-vs-file'));
    await writeFile(join(a, 'dir-vs-file/inner'), '');
    await writeFile(join(b, 'dir-vs-file'), '');
    await mkdir(join(a, 'dir-vs-link'));
    await symlink(a, join(b, 'dir-vs-link'));
    writeFileSync(Buffer.concat([Buffer.from(`${b}/both/`), RAW]), '');
    const got = new Map<string, [string | undefined, string | undefined]>();
    await walkPair(
      await dir(a),
      await dir(b),
      (rel, x, y) => {
        expect(got.has(rel)).toBe(false);
        got.set(rel, [x?.type, y?.type]);
      },
      { concurrency: 3 },
    );
    expect(Object.fromEntries(got)).toEqual({
      '': ['dir', 'dir'],
      both: ['dir', 'dir'],
      'both/sub': ['dir', 'dir'],
      'both/sub/same': ['file', 'file'],
      'both/only-a': ['file', undefined],
      'both/only-b': [undefined, 'file'],
      [`both/${relFromBuffer(RAW)}`]: [undefined, 'file'],
      'tree-a': ['dir', undefined],
      'dir-vs-file': ['dir', 'file'],
      'dir-vs-link': ['dir', 'symlink'],
    });
  });

  it('does not descend into another filesystem on either side', async () => {
    const a = await fresh();
    const b = await fresh();
    await mkdir(join(a, 'm'));
    await writeFile(join(a, 'm/f'), '');
    await mountTmpfs(join(b, 'm'));
    await writeFile(join(b, 'm/f'), '');
    const got = new Map<string, [boolean | undefined, boolean | undefined]>();
    await walkPair(await dir(a), await dir(b), (rel, x, y) => void got.set(rel, [x?.crossDevice, y?.crossDevice]));
    expect(got.get('m')).toEqual([undefined, true]);
    expect(got.has('m/f')).toBe(false);
  });

  it('throws TreeChangedError when one side is swapped under it', async () => {
    const a = await fresh();
    const b = await fresh();
    for (const r of [a, b]) await mkdir(join(r, 'd'));
    await expect(
      walkPair(await dir(a), await dir(b), async (rel) => {
        if (rel === 'd') {
          await rename(join(b, 'd'), join(b, 'd2'));
          await mkdir(join(b, 'd'));
        }
      }),
    ).rejects.toBeInstanceOf(TreeChangedError);
  });
});

describe('treeDigest', () => {
  it('changes with any change anywhere, and indexes every inode', async () => {
    const root = await fresh();
    await mkdir(join(root, 'a/b'), { recursive: true });
    await writeFile(join(root, 'a/b/f'), 'hello');
    await writeFile(join(root, 'g'), 'g');
    const r = await dir(root);
    const first = await treeDigest(r, { concurrency: 2 });
    expect((await treeDigest(r)).digest).toBe(first.digest);
    for (const rel of ['', 'a', 'a/b', 'a/b/f', 'g']) {
      const st = lstatSync(join(root, rel));
      expect(first.index.has(st.dev, st.ino)).toBe(true);
    }
    expect(first.index.has(statSync(base).dev, statSync(base).ino)).toBe(false);
    expect(first.entries).toBe(5);

    // The same tree gives the same digest whatever the parallelism.
    for (let i = 0; i < 40; i++) await writeFile(join(root, 'a', `x${i}`), String(i));
    const again = (await treeDigest(r, { concurrency: 1 })).digest;
    expect((await treeDigest(r, { concurrency: 32 })).digest).toBe(again);
    expect((await treeDigest(r, { concurrency: 7, syncStat: true })).digest).toBe(again);
    expect(again).not.toBe(first.digest);

    const changes: [string, () => Promise<void>][] = [
      ['mode', () => chmod(join(root, 'a/b/f'), 0o600)],
      ['owner', () => chown(join(root, 'a/b/f'), NOBODY, NOBODY)],
      ['mtime', () => utimes(join(root, 'a/b/f'), 1000, 1000)],
      ['content, same size', () => writeFile(join(root, 'a/b/f'), 'HELLO')],
      ['new deep file', () => writeFile(join(root, 'a/b/new'), '')],
      ['rename', () => rename(join(root, 'a/b/new'), join(root, 'a/b/new2'))],
      [
        'type',
        async () => {
          await rm(join(root, 'a/b/new2'));
          await mkdir(join(root, 'a/b/new2'));
        },
      ],
    ];
    let previous = first.digest;
    for (const [what, change] of changes) {
      await change();
      const now = (await treeDigest(r)).digest;
      expect(now, what).not.toBe(previous);
      previous = now;
    }
  });
});

describe('removeTree', () => {
  it('removes a tree, unlinking symlinks without following them; idempotent', async () => {
    const parent = await fresh();
    const outside = await fresh();
    await writeFile(join(outside, 'keep'), 'keep');
    await mkdir(join(parent, 'victim/a/b'), { recursive: true });
    for (let i = 0; i < 50; i++) await writeFile(join(parent, 'victim/a/b', `f${i}`), '');
    await symlink(outside, join(parent, 'victim/a/link'));
    await symlink(join(outside, 'keep'), join(parent, 'victim/keep'));
    writeFileSync(Buffer.concat([Buffer.from(`${parent}/victim/`), RAW]), '');
    const p = await dir(parent);
    const id = statSync(join(parent, 'victim'));
    const r = await removeTree(p, 'victim', { dev: id.dev, ino: id.ino }, { concurrency: 4 });
    // 50 files, 2 symlinks, 1 raw name; directories b, a, victim
    expect(r.removed).toBe(50 + 2 + 1 + 3);
    expect(existsSync(join(parent, 'victim'))).toBe(false);
    expect(readFileSync(join(outside, 'keep'), 'utf8')).toBe('keep');
    expect(await removeTree(p, 'victim', { dev: id.dev, ino: id.ino })).toEqual({ removed: 0 });
  });

  it('stops on an aborted signal, leaving the rest for a later call', async () => {
    const parent = await fresh();
    await mkdir(join(parent, 'victim/a'), { recursive: true });
    await writeFile(join(parent, 'victim/a/f'), '');
    const id = statSync(join(parent, 'victim'));
    const ac = new AbortController();
    const p = await dir(parent);
    await expect(
      removeTree(p, 'victim', { dev: id.dev, ino: id.ino }, { signal: ac.signal, onProgress: () => ac.abort(new Error('stop')) }),
    ).rejects.toThrow('stop');
    expect(existsSync(join(parent, 'victim/a/f'))).toBe(true);
    expect((await removeTree(p, 'victim', { dev: id.dev, ino: id.ino })).removed).toBe(3);
  });

  it('refuses another directory than the one expected, and a symlink', async () => {
    const parent = await fresh();
    await mkdir(join(parent, 'victim'));
    await mkdir(join(parent, 'other'));
    await symlink(join(parent, 'victim'), join(parent, 'link'));
    const p = await dir(parent);
    const other = statSync(join(parent, 'other'));
    await expect(removeTree(p, 'victim', { dev: other.dev, ino: other.ino })).rejects.toBeInstanceOf(IdentityError);
    await expect(removeTree(p, 'link', { dev: other.dev, ino: other.ino })).rejects.toBeInstanceOf(NotADirectoryError);
    expect(existsSync(join(parent, 'victim'))).toBe(true);
  });

  it('refuses to cross into another filesystem and removes nothing across it', async () => {
    const parent = await fresh();
    await mkdir(join(parent, 'victim/sub'), { recursive: true });
    await mountTmpfs(join(parent, 'victim/sub/mnt'));
    await writeFile(join(parent, 'victim/sub/mnt/precious'), 'p');
    const id = statSync(join(parent, 'victim'));
    await expect(removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino })).rejects.toBeInstanceOf(CrossDeviceError);
    expect(readFileSync(join(parent, 'victim/sub/mnt/precious'), 'utf8')).toBe('p');
  });

  it('refuses a bind mount of the same filesystem inside the tree', async () => {
    const parent = await fresh();
    const other = await fresh();
    await writeFile(join(other, 'precious'), 'p');
    await mkdir(join(parent, 'victim/bound'), { recursive: true });
    await execa('mount', ['--bind', other, join(parent, 'victim/bound')]);
    mounts.push(join(parent, 'victim/bound'));
    const id = statSync(join(parent, 'victim'));
    await expect(removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino })).rejects.toBeInstanceOf(CrossDeviceError);
    expect(readFileSync(join(other, 'precious'), 'utf8')).toBe('p');
  });

  it('refuses a file bind-mounted inside the tree', async () => {
    const parent = await fresh();
    const other = await fresh();
    await writeFile(join(other, 'precious'), 'p');
    await mkdir(join(parent, 'victim'));
    await writeFile(join(parent, 'victim/f'), '');
    await execa('mount', ['--bind', join(other, 'precious'), join(parent, 'victim/f')]);
    mounts.push(join(parent, 'victim/f'));
    const id = statSync(join(parent, 'victim'));
    await expect(removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino })).rejects.toBeInstanceOf(CrossDeviceError);
    expect(readFileSync(join(other, 'precious'), 'utf8')).toBe('p');
  });

  it('removes the same with syncStat', async () => {
    const parent = await fresh();
    await mkdir(join(parent, 'victim/a/b'), { recursive: true });
    for (let i = 0; i < 300; i++) await writeFile(join(parent, 'victim/a/b', `f${i}`), '');
    await symlink('/etc', join(parent, 'victim/a/etc'));
    const id = statSync(join(parent, 'victim'));
    expect(await removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino }, { syncStat: true })).toEqual({ removed: 304 });
    expect(existsSync(join(parent, 'victim'))).toBe(false);
    expect(existsSync('/etc/passwd')).toBe(true);
  });

  describe('the attack of issue 8 item 1, by a real unprivileged user', () => {
    /** A nobody-owned tree with subdirectory d of files f0..f9, and a root-only dir with files of the same names. */
    async function setup(dirs = 1, files = 10): Promise<{ parent: string; secret: string }> {
      const parent = await fresh();
      const secret = await fresh();
      await chmod(secret, 0o700);
      for (let i = 0; i < files; i++) await writeFile(join(secret, `f${i}`), `secret ${i}`);
      await mkdir(join(parent, 'victim'));
      for (let k = 0; k < dirs; k++) {
        const d = join(parent, 'victim', dirs === 1 ? 'd' : `d${k}`);
        await mkdir(d);
        for (let i = 0; i < files; i++) await writeFile(join(d, `f${i}`), `user ${i}`);
      }
      await execa('chown', ['-R', `${NOBODY}:${NOBODY}`, parent]);
      return { parent, secret };
    }

    function secretIntact(secret: string, files = 10): void {
      expect(readdirSync(secret).sort()).toEqual(Array.from({ length: files }, (_, i) => `f${i}`).sort());
      for (let i = 0; i < files; i++) expect(readFileSync(join(secret, `f${i}`), 'utf8')).toBe(`secret ${i}`);
    }

    it('a subdirectory swapped for a symlink to a root-only directory as the removal enters it', async () => {
      const { parent, secret } = await setup();
      // The attacker cannot read the secret itself.
      await expect(asNobody('import os,sys; os.listdir(sys.argv[1])', secret)).rejects.toThrow(/PermissionError/);
      const id = statSync(join(parent, 'victim'));
      let attacked = false;
      const r = await removeTree(
        await dir(parent),
        'victim',
        { dev: id.dev, ino: id.ino },
        {
          onProgress: async ({ rel, phase }) => {
            if (rel !== 'victim/d' || phase !== 'enter' || attacked) return;
            attacked = true;
            await asNobody(
              'import os,sys; v=sys.argv[1]; os.rename(v+"/d", v+"/d.away"); os.symlink(sys.argv[2], v+"/d"); print(os.readlink(v+"/d"))',
              join(parent, 'victim'),
              secret,
            );
            expect(lstatSync(join(parent, 'victim/d')).isSymbolicLink()).toBe(true);
          },
        },
      );
      expect(attacked).toBe(true);
      secretIntact(secret);
      expect(existsSync(join(parent, 'victim'))).toBe(false);
      expect(r.removed).toBeGreaterThan(10);
    });

    it('a subdirectory swapped for a symlink between the listing and the descent', async () => {
      const { parent, secret } = await setup();
      const id = statSync(join(parent, 'victim'));
      let attacked = false;
      await removeTree(
        await dir(parent),
        'victim',
        { dev: id.dev, ino: id.ino },
        {
          onProgress: async ({ rel, phase }) => {
            if (rel !== 'victim' || phase !== 'listed' || attacked) return;
            attacked = true;
            await asNobody(
              'import os,sys; v=sys.argv[1]; os.rename(v+"/d", v+"/d.away"); os.symlink(sys.argv[2], v+"/d")',
              join(parent, 'victim'),
              secret,
            );
          },
        },
      );
      expect(attacked).toBe(true);
      secretIntact(secret);
      expect(existsSync(join(parent, 'victim'))).toBe(false);
    });

    it('an attacker swapping directories for symlinks in a loop while a large tree is removed', async () => {
      const dirs = 150;
      const files = 20;
      const { parent, secret } = await setup(dirs, files);
      const stop = join(base, `stop-${n}`);
      const id = statSync(join(parent, 'victim'));
      // Swap every directory (or what is in its place) for a symlink to the secret, over and over.
      const attacker = execa(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          '--',
          '/usr/bin/python3',
          '-c',
          `
import os, sys, time
v, secret, n, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
swaps = 0
print("ready", flush=True)
end = time.time() + 60
while not os.path.exists(stop) and time.time() < end:
    for k in range(n):
        d = "%s/d%d" % (v, k)
        try:
            os.rename(d, "%s.%d" % (d, swaps))
            os.symlink(secret, d)
            swaps += 1
        except OSError:
            pass
print(swaps, flush=True)
`,
          join(parent, 'victim'),
          secret,
          String(dirs),
          stop,
        ],
        { reject: false },
      );
      await new Promise<void>((resolve) => attacker.stdout!.once('data', () => resolve()));
      let gaveUp = false;
      try {
        await removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino }, { concurrency: 8, maxRounds: 5 });
      } catch (error) {
        // Giving up on a tree that keeps changing is allowed; following a symlink is not.
        expect(error).toBeInstanceOf(TreeChangedError);
        gaveUp = true;
      }
      writeFileSync(stop, '');
      const out = await attacker;
      const swaps = Number(/ready\n(\d+)/.exec(out.stdout)?.[1]);
      expect(swaps).toBeGreaterThan(0);
      secretIntact(secret, files);
      // Once the attacker stops, the removal completes.
      if (gaveUp) await removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino });
      expect(existsSync(join(parent, 'victim'))).toBe(false);
      secretIntact(secret, files);
    });
  });
});

describe('copyEntry', () => {
  async function pair(): Promise<{ s: string; d: string; src: DirRef; dst: DirRef; outside: string }> {
    const s = await fresh();
    const d = await fresh();
    const outside = await fresh();
    await writeFile(join(outside, 'root-only'), 'ROOT ONLY');
    await chmod(join(outside, 'root-only'), 0o600);
    return { s, d, src: await dir(s), dst: await dir(d), outside };
  }

  it('copies a file with owner, mode (setuid too) and times, leaving no temporary name', async () => {
    const { s, d, src, dst } = await pair();
    await writeFile(join(s, 'f'), 'content');
    await chown(join(s, 'f'), NOBODY, NOBODY);
    await chmod(join(s, 'f'), 0o4750);
    await utimes(join(s, 'f'), 1_600_000_000.5, 1_500_000_000.25);
    const info = await statAt(src, 'f');
    const r = await copyEntry(src, 'f', dst, 'copy', info);
    expect(r.bytes).toBe(7);
    const st = statSync(join(d, 'copy'));
    expect(readFileSync(join(d, 'copy'), 'utf8')).toBe('content');
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([NOBODY, NOBODY, 0o4750]);
    // To the microsecond (Node 22 and later keep the half microsecond stampSeconds adds).
    expect(Math.floor(st.mtimeMs * 1000) / 1000).toBe(1_500_000_000_250);
    expect(readdirSync(d)).toEqual(['copy']);
  });

  it('gives the copy the whole millisecond its source shows, for times on or just below a millisecond boundary (OpenZFS keeps nanoseconds)', async () => {
    const { s, d, src, dst } = await pair();
    // Times the kernel's coarse clock makes (whole milliseconds), and the hardest fractions.
    const times = [
      '1795781580.024000000',
      '1795781580.024999999',
      '1795781580.024999880',
      '1795781580.024000001',
      '1700000000.000000000',
      '1795781580.123456789',
      '1000000000.999999999',
    ];
    for (const [i, t] of times.entries()) {
      const name = `f${i}`;
      await writeFile(join(s, name), t);
      await execa('touch', ['-m', '-d', `@${t}`, join(s, name)]);
      await copyEntry(src, name, dst, name, await statAt(src, name));
      const [a, b] = [lstatSync(join(s, name), { bigint: true }), lstatSync(join(d, name), { bigint: true })];
      expect({ t, ms: Math.floor(lstatSync(join(d, name)).mtimeMs) }).toEqual({ t, ms: Math.floor(lstatSync(join(s, name)).mtimeMs) });
      // To the microsecond, except where that would change the millisecond Node shows.
      const diff = a.mtimeNs - b.mtimeNs;
      expect({ t, close: diff >= 0n ? diff < 1000n : -diff < 1_000_000n }).toEqual({ t, close: true });
    }
  });

  it('replaces an older copy, and writes through no symlink planted at the destination', async () => {
    const { s, d, src, dst, outside } = await pair();
    await writeFile(join(s, 'f'), 'new content');
    await writeFile(join(s, 'g'), 'g');
    await writeFile(join(d, 'g'), 'old');
    await symlink(join(outside, 'root-only'), join(d, 'f'));
    await copyEntry(src, 'f', dst, 'f', await statAt(src, 'f'));
    await copyEntry(src, 'g', dst, 'g', await statAt(src, 'g'));
    expect(lstatSync(join(d, 'f')).isFile()).toBe(true);
    expect(readFileSync(join(d, 'f'), 'utf8')).toBe('new content');
    expect(readFileSync(join(d, 'g'), 'utf8')).toBe('g');
    expect(readFileSync(join(outside, 'root-only'), 'utf8')).toBe('ROOT ONLY');
    expect(statSync(join(outside, 'root-only')).uid).toBe(0);
  });

  it('reads through no symlink planted in the source after the listing', async () => {
    const { s, d, src, dst, outside } = await pair();
    await writeFile(join(s, 'f'), 'mine');
    const info = await statAt(src, 'f');
    await rm(join(s, 'f'));
    await symlink(join(outside, 'root-only'), join(s, 'f'));
    await expect(copyEntry(src, 'f', dst, 'f', info)).rejects.toBeInstanceOf(TreeChangedError);
    // Another file in its place is refused too.
    await writeFile(join(s, 'other'), 'other'); // made first, so it cannot reuse the old inode number
    await rm(join(s, 'f'));
    await rename(join(s, 'other'), join(s, 'f'));
    await expect(copyEntry(src, 'f', dst, 'f', info)).rejects.toBeInstanceOf(TreeChangedError);
    // A fifo in its place neither blocks nor is copied.
    await rm(join(s, 'f'));
    await execa('mkfifo', [join(s, 'f')]);
    await expect(copyEntry(src, 'f', dst, 'f', info)).rejects.toBeInstanceOf(TreeChangedError);
    expect(readdirSync(d)).toEqual([]);
  });

  it('makes directories and symlinks with their own metadata, never touching a symlink target', async () => {
    const { s, d, src, dst, outside } = await pair();
    await mkdir(join(s, 'sub'));
    await chown(join(s, 'sub'), NOBODY, NOBODY);
    await chmod(join(s, 'sub'), 0o1750);
    await symlink(join(outside, 'root-only'), join(s, 'ln'));
    await execa('chown', ['-h', `${NOBODY}:${NOBODY}`, join(s, 'ln')]);
    await copyEntry(src, 'sub', dst, 'sub', await statAt(src, 'sub'));
    const sub = statSync(join(d, 'sub'));
    expect([sub.uid, sub.mode & 0o7777]).toEqual([NOBODY, 0o1750]);
    await copyEntry(src, 'ln', dst, 'ln', await statAt(src, 'ln'));
    expect(readlinkSync(join(d, 'ln'))).toBe(join(outside, 'root-only'));
    expect(lstatSync(join(d, 'ln')).uid).toBe(NOBODY);
    expect(statSync(join(outside, 'root-only')).uid).toBe(0);
    // An existing directory: metadata only; a symlink where a directory should be: refused.
    await chmod(join(s, 'sub'), 0o755);
    await copyEntry(src, 'sub', dst, 'sub', await statAt(src, 'sub'));
    expect(statSync(join(d, 'sub')).mode & 0o7777).toBe(0o755);
    await symlink(outside, join(d, 'sub2'));
    await expect(copyEntry(src, 'sub', dst, 'sub2', await statAt(src, 'sub'))).rejects.toBeInstanceOf(TreeChangedError);
    expect(statSync(outside).uid).toBe(0);
    expect(statSync(outside).mode & 0o7777).not.toBe(0o755 + 1);
    expect(readdirSync(d).sort()).toEqual(['ln', 'sub', 'sub2']);
  });

  it('returns an error for fifos, sockets and devices', async () => {
    const { s, src, dst } = await pair();
    await execa('mkfifo', [join(s, 'p')]);
    await expect(copyEntry(src, 'p', dst, 'p', await statAt(src, 'p'))).rejects.toBeInstanceOf(UnsupportedEntryError);
  });

  it('setMetadata changes a symlink itself, not its target', async () => {
    const { s, src, outside } = await pair();
    symlinkSync(join(outside, 'root-only'), join(s, 'ln'));
    const info = { ...(await statAt(src, 'ln')), uid: NOBODY, gid: NOBODY, mtimeExactMs: 5000, atimeExactMs: 5000 };
    await setMetadata(src, 'ln', info);
    expect(lstatSync(join(s, 'ln')).uid).toBe(NOBODY);
    expect(lstatSync(join(s, 'ln')).mtimeMs).toBe(5000);
    expect(statSync(join(outside, 'root-only')).uid).toBe(0);
    await expect(setMetadata(src, 'ln', { ...info, type: 'file' })).rejects.toBeInstanceOf(TreeChangedError);
  });

  it('ensureDir opens or makes each component, refusing a symlink on the way', async () => {
    const { s, d, src, dst, outside } = await pair();
    await mkdir(join(s, 'a/b/c'), { recursive: true });
    await chown(join(s, 'a/b'), NOBODY, NOBODY);
    const metas = new Map<string, EntryInfo>();
    await walk(src, (e) => void metas.set(e.rel, e));
    const c = await ensureDir(dst, 'a/b/c', (rel) => metas.get(rel));
    opened.push(c);
    expect(c.ino).toBe(statSync(join(d, 'a/b/c')).ino);
    expect(statSync(join(d, 'a/b')).uid).toBe(NOBODY);
    await expect(ensureDir(dst, 'x/y')).rejects.toThrow(/ENOENT/);
    await symlink(outside, join(d, 'a/b/evil'));
    await expect(ensureDir(dst, 'a/b/evil', (rel) => metas.get(rel))).rejects.toBeInstanceOf(NotADirectoryError);
    const top = await ensureDir(dst, '');
    opened.push(top);
    expect(top.ino).toBe(dst.ino);
    expect(await readFile(join(outside, 'root-only'), 'utf8')).toBe('ROOT ONLY');
  });

  it('refuses openChild of a child swapped meanwhile (identity from the listing)', async () => {
    const { s, src } = await pair();
    await mkdir(join(s, 'x'));
    const info = await statAt(src, 'x');
    await rename(join(s, 'x'), join(s, 'y'));
    await mkdir(join(s, 'x'));
    await expect(openChild(src, 'x', info)).rejects.toBeInstanceOf(IdentityError);
    chownSync(join(s, 'y'), 0, 0);
  });
});
