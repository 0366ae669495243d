/**
 * Removal only of what was verified, walks that see the original below a directory the other side
 * lacks, compare-and-copy, and extended attributes (ACLs included) kept by copyEntry (issue 19).
 * Runs as root on the host's own filesystem (ext4 here: user xattrs and POSIX ACLs); the attacker
 * runs as nobody through setpriv.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  copyEntry,
  DestinationChangedError,
  openDir,
  removeTree,
  statAt,
  UnverifiedEntriesError,
  VerifiedSet,
  walk,
  walkPair,
  type DirRef,
} from '../../src/util/safefs/index.js';

const NOBODY = 65534;
const OTHER = 4242;
let base: string;
const opened: DirRef[] = [];

async function dir(path: string): Promise<DirRef> {
  const d = await openDir(path);
  opened.push(d);
  return d;
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'safefs-verified-'));
  await chmod(base, 0o755);
});
afterEach(async () => {
  for (const d of opened.splice(0)) await d.close();
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

/** Every entry of the tree at `path`, as a verification would have seen it. */
async function verifiedSetOf(path: string): Promise<VerifiedSet> {
  const root = await dir(path);
  const set = new VerifiedSet(root.dev);
  await walk(root, (e) => set.add(e));
  return set;
}

async function userTree(parent: string): Promise<string> {
  const victim = join(parent, 'victim');
  await mkdir(join(victim, 'a/b'), { recursive: true });
  await mkdir(join(victim, 'park'));
  for (let i = 0; i < 20; i++) await writeFile(join(victim, 'a/b', `f${i}`), `user ${i}`);
  await writeFile(join(victim, 'top'), 'user top');
  await writeFile(join(victim, 'park', 'keep'), 'user keep');
  await execa('chown', ['-R', `${NOBODY}:${NOBODY}`, victim]);
  return victim;
}

/** Another user's non-empty directory inside a directory of nobody's (as the attacker would move in). */
async function othersData(parent: string): Promise<string> {
  const stash = join(parent, 'stash');
  await mkdir(join(stash, 'theirs'), { recursive: true });
  await writeFile(join(stash, 'theirs', 'precious'), "another user's data");
  await chown(join(stash, 'theirs', 'precious'), OTHER, OTHER);
  await chown(join(stash, 'theirs'), OTHER, OTHER);
  await chown(stash, NOBODY, NOBODY);
  return stash;
}

describe('removeTree with a verified set', () => {
  it('removes what the verification saw and leaves (and names) what it never saw, giving its directory back its owner and mode', async () => {
    const parent = await fresh();
    const victim = await userTree(parent);
    const verified = await verifiedSetOf(victim);
    const stash = await othersData(parent);
    // Moved in after the verification: another user's directory, and a file.
    await execa('mv', [stash, join(victim, 'park', 'stash')]);
    await writeFile(join(victim, 'a', 'late'), 'late');
    const id = statSync(victim);
    const error = await removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino }, { verified, concurrency: 4 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UnverifiedEntriesError);
    expect([...(error as UnverifiedEntriesError).rels].sort()).toEqual(['victim/a/late', 'victim/park/stash']);
    expect((error as UnverifiedEntriesError).count).toBe(2);
    expect(readFileSync(join(victim, 'park/stash/theirs/precious'), 'utf8')).toBe("another user's data");
    expect(readFileSync(join(victim, 'a/late'), 'utf8')).toBe('late');
    // Everything verified is gone; the directories holding what was left are as they were.
    expect(existsSync(join(victim, 'a/b'))).toBe(false);
    expect(existsSync(join(victim, 'top'))).toBe(false);
    for (const d of [victim, join(victim, 'a'), join(victim, 'park')])
      expect(statSync(d)).toMatchObject({ uid: NOBODY, gid: NOBODY, mode: 0o40755 });
  });

  it('removes the whole tree when it holds only what was verified', async () => {
    const parent = await fresh();
    const victim = await userTree(parent);
    const verified = await verifiedSetOf(victim);
    const id = statSync(victim);
    expect(await removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino }, { verified })).toEqual({ removed: 20 + 2 + 4 });
    expect(existsSync(victim)).toBe(false);
  });

  it('takes the type into account: an inode number seen as a file does not let a directory go', async () => {
    const parent = await fresh();
    const victim = await userTree(parent);
    const root = await dir(victim);
    const set = new VerifiedSet(root.dev);
    await walk(root, (e) => set.add(e.type === 'dir' && e.rel === 'park' ? { ...e, type: 'file' } : e));
    const id = statSync(victim);
    await expect(removeTree(await dir(parent), 'victim', { dev: id.dev, ino: id.ino }, { verified: set })).rejects.toMatchObject({
      rels: ['victim/park'],
    });
    expect(existsSync(join(victim, 'park'))).toBe(true);
  });

  it('locks each directory before listing it: its owner cannot rename anything into it during the removal', async () => {
    const parent = await fresh();
    const victim = await userTree(parent);
    const verified = await verifiedSetOf(victim);
    const stash = await othersData(parent);
    const id = statSync(victim);
    let attempt = '';
    await removeTree(
      await dir(parent),
      'victim',
      { dev: id.dev, ino: id.ino },
      {
        verified,
        onProgress: async ({ rel, phase }) => {
          if (rel !== 'victim/park' || phase !== 'listed') return;
          // nobody owns park and stash: without the lock this rename would succeed.
          const r = await execa(
            'setpriv',
            ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'mv', '-T', stash, join(victim, 'park', 'stash')],
            { reject: false },
          );
          attempt = r.stderr;
        },
      },
    );
    expect(attempt).toMatch(/Permission denied/);
    expect(existsSync(victim)).toBe(false);
    expect(readFileSync(join(stash, 'theirs/precious'), 'utf8')).toBe("another user's data");
  });
});

describe('walkPair with alone', () => {
  it('walks side a below a directory side b lacks or holds as a file, marking each entry', async () => {
    const a = await fresh();
    const b = await fresh();
    await mkdir(join(a, 'gone/deep'), { recursive: true });
    await writeFile(join(a, 'gone/deep/f'), 'x');
    await mkdir(join(a, 'typed'));
    await writeFile(join(a, 'typed/g'), 'y');
    await writeFile(join(b, 'typed'), 'a file now');
    const seen: string[] = [];
    await walkPair(await dir(a), await dir(b), (rel, _x, y, alone) => void seen.push(`${rel}${alone ? ' alone' : ''}${y ? ' y' : ''}`), {
      alone: true,
    });
    expect(seen.sort()).toEqual([' y', 'gone', 'gone/deep alone', 'gone/deep/f alone', 'typed y', 'typed/g alone'].sort());
    const plain: string[] = [];
    await walkPair(await dir(a), await dir(b), (rel) => void plain.push(rel));
    expect(plain.sort()).toEqual(['', 'gone', 'typed']);
  });
});

describe('copyEntry: compare-and-copy', () => {
  it('replaces the destination only if it is still what was judged', async () => {
    const s = await fresh();
    const d = await fresh();
    await writeFile(join(s, 'f'), "the original's late change");
    await writeFile(join(d, 'f'), 'as judged');
    const [src, dst] = await Promise.all([dir(s), dir(d)]);
    const judged = await statAt(dst, 'f');
    // A user's edit between the judgement and the copy.
    await writeFile(join(d, 'f'), "the user's edit, meanwhile");
    await expect(copyEntry(src, 'f', dst, 'f', await statAt(src, 'f'), { replaces: judged })).rejects.toBeInstanceOf(
      DestinationChangedError,
    );
    expect(readFileSync(join(d, 'f'), 'utf8')).toBe("the user's edit, meanwhile");
    // Judged again: copied.
    await copyEntry(src, 'f', dst, 'f', await statAt(src, 'f'), { replaces: await statAt(dst, 'f') });
    expect(readFileSync(join(d, 'f'), 'utf8')).toBe("the original's late change");
    // Judged absent, made meanwhile: a file and a directory.
    await writeFile(join(s, 'g'), 'g');
    await mkdir(join(s, 'h'));
    await writeFile(join(d, 'g'), 'made by a user');
    await mkdir(join(d, 'h'), 0o777);
    const made = statSync(join(d, 'h'));
    await expect(copyEntry(src, 'g', dst, 'g', await statAt(src, 'g'), { replaces: null })).rejects.toBeInstanceOf(DestinationChangedError);
    await expect(copyEntry(src, 'h', dst, 'h', await statAt(src, 'h'), { replaces: null })).rejects.toBeInstanceOf(DestinationChangedError);
    expect(readFileSync(join(d, 'g'), 'utf8')).toBe('made by a user');
    expect(statSync(join(d, 'h'))).toMatchObject({ mode: made.mode, uid: made.uid, mtimeMs: made.mtimeMs });
  });
});

async function xattrsOf(path: string): Promise<string> {
  const r = await execa('getfattr', ['--absolute-names', '-d', '-m', '-', '-e', 'hex', path]);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .sort()
    .join('\n');
}

describe('copyEntry: extended attributes and POSIX ACLs', () => {
  it("copies a file's and a directory's xattrs and ACLs (default ACLs too), and drops an ACL the destination inherited", async () => {
    const s = await fresh();
    const d = await fresh();
    await writeFile(join(s, 'f'), 'data');
    await execa('setfattr', ['-n', 'user.note', '-v', 'kept', join(s, 'f')]);
    await execa('setfacl', ['-m', `u:${NOBODY}:rw`, join(s, 'f')]);
    await mkdir(join(s, 'sub'));
    await execa('setfacl', ['-d', '-m', `u:${NOBODY}:rwx`, join(s, 'sub')]);
    await execa('setfattr', ['-n', 'user.dir', '-v', 'yes', join(s, 'sub')]);
    await writeFile(join(s, 'plain'), 'no acl');
    // The destination directory has a default ACL: a new file in it inherits an access ACL.
    await execa('setfacl', ['-d', '-m', `u:${OTHER}:rwx`, d]);
    const [src, dst] = await Promise.all([dir(s), dir(d)]);
    for (const name of ['f', 'sub', 'plain']) await copyEntry(src, name, dst, name, await statAt(src, name));
    expect(await xattrsOf(join(d, 'f'))).toBe(await xattrsOf(join(s, 'f')));
    expect(await xattrsOf(join(d, 'f'))).toContain('user.note=0x6b657074');
    expect(await xattrsOf(join(d, 'sub'))).toBe(await xattrsOf(join(s, 'sub')));
    expect(await xattrsOf(join(d, 'sub'))).toContain('system.posix_acl_default');
    expect(await xattrsOf(join(d, 'plain'))).toBe('');
    expect((await execa('getfacl', ['-c', '-n', '-p', join(d, 'f')])).stdout).toContain(`user:${NOBODY}:rw-`);
    expect(statSync(join(d, 'f')).mode & 0o777).toBe(statSync(join(s, 'f')).mode & 0o777);
  });
});
