/** walk() and treeDigest(): every entry of a tree, never through a symlink, each directory checked. */
import { createHash, type Hash } from 'node:crypto';
import { InodeIndex } from '../inodes.js';
import type { DirRef } from './dir.js';
import type { EntryInfo } from './entry.js';
import { contextOf, fanOut, type WalkContext, type WalkOptions, type WalkResult } from './context.js';
import { listDir, openListed } from './list.js';

interface DigestSink {
  hash: boolean;
  index: InodeIndex | undefined;
}

function entryRecord(e: EntryInfo): string {
  return `${e.name}\0${e.type}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.size}\0${e.mtimeExactMs}\0${e.ctimeExactMs}\0${e.ino}\0${e.nlink}\0${e.rdev}\0${e.target ?? ''}\0${e.crossDevice ? 'x' : ''}\n`;
}

export async function descend(
  ctx: WalkContext,
  dir: DirRef,
  rel: string,
  root: { dev: number; mount: number | undefined },
  visit: (e: EntryInfo) => void | Promise<void>,
  digest: DigestSink | undefined,
): Promise<Buffer | undefined> {
  if (ctx.stopped) return undefined;
  const infos = await listDir(ctx, dir, rel, root.dev);
  let hash: Hash | undefined;
  if (digest?.hash) hash = createHash('sha256');
  ctx.held += infos.length;
  try {
    for (const info of infos) {
      if (ctx.stopped) return undefined;
      ctx.count(info);
      hash?.update(entryRecord(info), 'latin1');
      if (digest?.index && !info.crossDevice) digest.index.add(info.ino);
      const r = visit(info);
      if (r !== undefined) await r;
    }
  } finally {
    ctx.held -= infos.length;
  }
  const subdirs = infos.filter((i) => i.type === 'dir' && !i.crossDevice);
  const childDigests: (Buffer | undefined)[] = new Array<Buffer | undefined>(subdirs.length);
  await fanOut(ctx, subdirs, async (info, i) => {
    const child = await openListed(dir, info, root.mount);
    try {
      childDigests[i] = await descend(ctx, child, info.rel, root, visit, digest);
    } finally {
      await child.close();
    }
  });
  if (!hash || ctx.stopped) return undefined;
  const top = createHash('sha256').update(hash.digest());
  for (const d of childDigests) top.update(d!);
  return top.digest();
}

async function runWalk(
  root: DirRef,
  visit: (e: EntryInfo) => void | Promise<void>,
  opts: WalkOptions | undefined,
  digest: DigestSink | undefined,
): Promise<{ result: WalkResult; digest: Buffer | undefined }> {
  const ctx = contextOf(opts);
  const rootInfo = await root.info();
  ctx.count(rootInfo);
  digest?.index?.add(rootInfo.ino);
  let d: Buffer | undefined;
  try {
    const r = visit(rootInfo);
    if (r !== undefined) await r;
    d = await descend(ctx, root, '', { dev: root.dev, mount: await root.mountId() }, visit, digest);
  } catch (error) {
    ctx.fail(error);
  }
  if (ctx.stopped) throw ctx.error;
  if (d !== undefined) d = createHash('sha256').update(entryRecord(rootInfo), 'latin1').update(d).digest();
  return { result: { entries: ctx.entries, bytes: ctx.bytes }, digest: d };
}

/**
 * Reports every entry of the tree below `root` (root itself as rel ''), never following a symlink.
 * Subdirectories are opened through their parent's descriptor and must have the identity their
 * listing showed (else TreeChangedError). Directories on another device are reported with
 * crossDevice and not descended; a bind mount of the same filesystem is a CrossDeviceError.
 *
 * `visit` is awaited entry by entry within one directory (in byte order of names, a directory
 * before its contents); entries of different directories may be visited concurrently.
 */
export async function walk(root: DirRef, visit: (e: EntryInfo) => void | Promise<void>, opts?: WalkOptions): Promise<WalkResult> {
  return (await runWalk(root, visit, opts, undefined)).result;
}

/** A digest that changes when anything in the tree changes, and the tree's inodes, from one walk. */
export async function treeDigest(
  root: DirRef,
  opts?: WalkOptions & { visit?: (e: EntryInfo) => void },
): Promise<{ digest: string; index: InodeIndex; entries: number; bytes: number }> {
  const index = new InodeIndex(root.dev);
  const { result, digest } = await runWalk(root, opts?.visit ?? (() => undefined), opts, { hash: true, index });
  return { digest: digest!.toString('hex'), index, ...result };
}
