/**
 * Applying what a pass decided: each entry copied by descriptor only if the dataset side is still
 * what was judged (compare-and-copy: a user's edit made meanwhile is never overwritten, the next
 * pass judges again), and, with verifyContent, the contents of files judged equal compared.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import {
  nameOf,
  parentOf,
  TreeChangedError,
  UnsupportedEntryError,
  at,
  copyEntry,
  displayPath,
  ensureDir,
  openChild,
  statAt,
  walk,
  type DirRef,
  type EntryInfo,
  type Job,
} from '../../src/index.js';
import { metaOf, type Meta } from './threeway.js';

/** An entry a pass decided to copy: the original's version, and the dataset's as judged. */
export interface Copy {
  rel: string;
  o: EntryInfo;
  d: EntryInfo | undefined;
}

/** What applying a pass's copies did: the baseline's new entries, and whether anything changed meanwhile. */
export interface Applied {
  copied: number;
  bytes: number;
  changes: [string, Meta][];
  changing: boolean;
}

/** Open directories of one tree by relative path, each opened once, all closed together. */
class Dirs {
  private readonly open = new Map<string, Promise<DirRef>>();
  constructor(
    private readonly root: DirRef,
    private readonly create?: (rel: string) => EntryInfo | undefined,
  ) {}
  get(rel: string): Promise<DirRef> {
    if (rel === '') return Promise.resolve(this.root);
    let ref = this.open.get(rel);
    if (!ref) {
      ref = ensureDir(this.root, rel, this.create);
      this.open.set(rel, ref);
      ref.catch(() => this.open.delete(rel));
    }
    return ref;
  }
  async close(): Promise<void> {
    for (const ref of this.open.values()) await (await ref.catch(() => undefined))?.close();
    this.open.clear();
  }
}

async function sha256Of(dir: DirRef, name: string): Promise<string> {
  const handle = await openFile(at(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  const hash = createHash('sha256');
  try {
    // Never read anything but a regular file (a FIFO swapped in would give nothing, or block a read).
    if (!(await handle.stat()).isFile()) throw new TreeChangedError(name, `${displayPath(name)} is no longer a regular file`);
    for await (const chunk of handle.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

const byRel = (a: { rel: string }, b: { rel: string }): number => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0);

/** One application of a pass's copies, between the original and the live dataset. */
class CopyRun {
  readonly done: Applied = { copied: 0, bytes: 0, changes: [], changing: false };
  /** Directories the original holds and the dataset lacks are made with the original's metadata. */
  private readonly known: Map<string, EntryInfo>;
  readonly src: Dirs;
  readonly dst: Dirs;

  constructor(
    private readonly original: DirRef,
    private readonly live: DirRef,
    copies: readonly Copy[],
    private readonly conflicts: string[],
  ) {
    this.known = new Map(copies.map((c) => [c.rel, c.o]));
    this.src = new Dirs(original);
    this.dst = new Dirs(live, (rel) => this.known.get(rel));
  }

  private parents(rel: string): Promise<[DirRef, DirRef]> {
    return Promise.all([this.src.get(parentOf(rel)), this.dst.get(parentOf(rel))]);
  }

  private async copyOne(from: DirRef, to: DirRef, rel: string, o: EntryInfo, d: EntryInfo | null): Promise<void> {
    this.done.bytes += (await copyEntry(from, nameOf(rel), to, nameOf(rel), o, { replaces: d })).bytes;
    this.done.copied++;
    // The new baseline is what the dataset now holds (a file still being written may
    // have grown during the copy), so that a later change is seen as the original's own.
    this.done.changes.push([rel, metaOf(await statAt(to, nameOf(rel)))]);
  }

  /** The root's own metadata, through the open directory, if it is still as judged. */
  private async copyRoot(o: EntryInfo, d: EntryInfo | undefined): Promise<void> {
    const now = await this.live.info();
    if (d === undefined || now.ctimeExactMs !== d.ctimeExactMs)
      throw new TreeChangedError('', "the dataset's top directory changed after the copy was decided");
    await this.live.handle.chown(o.uid, o.gid);
    await this.live.handle.chmod(o.mode & 0o7777);
    this.done.copied++;
    this.done.changes.push(['', metaOf(o)]);
  }

  /** Copies everything below `rel`, a directory new in the original just copied (nothing was in the dataset there). */
  private async copyBelow(from: DirRef, rel: string, o: EntryInfo): Promise<void> {
    const child = await openChild(from, nameOf(rel), o);
    try {
      const below: EntryInfo[] = [];
      await walk(child, (e) => {
        if (e.rel !== '') below.push(e);
      });
      for (const e of below) this.known.set(`${rel}/${e.rel}`, e);
      for (const e of below.sort((a, b) => (a.rel < b.rel ? -1 : 1))) {
        const full = `${rel}/${e.rel}`;
        if (e.crossDevice) {
          this.conflicts.push(`${displayPath(full)}: another filesystem is mounted there in the original`);
          continue;
        }
        const [f, t] = await this.parents(full);
        await this.copyOne(f, t, full, e, null);
      }
    } finally {
      await child.close();
    }
  }

  async copy({ rel, o, d }: Copy): Promise<void> {
    try {
      const [from, to] = await this.parents(rel);
      if (rel === '') return await this.copyRoot(o, d);
      await this.copyOne(from, to, rel, o, d ?? null);
      // A whole directory new in the original: everything below it is new too.
      if (o.type === 'dir') await this.copyBelow(from, rel, o);
    } catch (error) {
      if (error instanceof TreeChangedError) this.done.changing = true;
      else if (error instanceof UnsupportedEntryError)
        this.conflicts.push(`${displayPath(rel)}: a late ${o.type} cannot be caught up; copy it by hand`);
      else throw error;
    }
  }

  /** verifyContent: a file judged equal by size and time must have the same content too. */
  async compare(rel: string): Promise<void> {
    const [from, to] = await this.parents(rel);
    const [a, b] = await Promise.all([sha256Of(from, nameOf(rel)), sha256Of(to, nameOf(rel))]).catch((error: unknown) => {
      if (!(error instanceof TreeChangedError)) throw error;
      this.done.changing = true;
      return ['', ''];
    });
    if (a !== b) this.conflicts.push(`${displayPath(rel)}: content differs although size and time are equal`);
  }
}

/**
 * Copies what a pass decided to copy (see the top of this file). A step of its own
 * (`<phase>/catch-up-copy`) when there is anything to copy.
 */
export async function applyCopies(
  job: Job,
  original: DirRef,
  live: DirRef,
  copies: Copy[],
  sameFiles: string[],
  conflicts: string[],
): Promise<Applied> {
  const run = new CopyRun(original, live, copies, conflicts);
  const apply = async (): Promise<void> => {
    for (const c of copies.sort(byRel)) await run.copy(c);
    for (const rel of sameFiles) await run.compare(rel);
  };
  try {
    if (copies.length > 0)
      await job.step('catch-up-copy', `copy ${copies.length} entr${copies.length === 1 ? 'y' : 'ies'} the original changed`, apply);
    else await apply();
  } finally {
    await Promise.all([run.src.close(), run.dst.close()]);
  }
  return run.done;
}
