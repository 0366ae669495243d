/**
 * Descriptor-based filesystem primitives for trees that hostile users control while we work.
 *
 * Node has no openat/unlinkat, so every operation below a directory goes through the directory's
 * descriptor: with the directory open as fd N, the path `/proc/self/fd/N/<name>` is resolved relative
 * to that directory exactly like openat(N, name). `<name>` is a single component (never `.`, `..` or
 * anything with a slash), and every operation used on it either does not follow a final symlink
 * (lstat, unlink, rmdir, rename, readlink, symlink, mkdir) or is an open with O_NOFOLLOW. No path
 * component can be redirected, and a rename of the directory itself meanwhile does not matter.
 *
 * Names are raw bytes. Relative paths and names are carried losslessly as JavaScript strings in
 * 'latin1' encoding (one character per byte, `Buffer.from(rel, 'latin1')` gives the bytes back);
 * `displayPath` decodes them as UTF-8 for messages.
 *
 * Metadata of an entry that is not open (symlinks included) is changed through an O_PATH descriptor:
 * `chown`/`chmod`/`utimes` on `/proc/self/fd/<O_PATH fd>` act on exactly that inode, a symlink
 * itself included (measured: the symlink's owner and times change, its target's do not).
 *
 * One module per concern: names.ts (names and relative paths), entry.ts (what an entry is),
 * errors.ts, dir.ts (DirRef: an open directory), context.ts and list.ts (what walks share),
 * walk.ts (walk, treeDigest), pair.ts (walkPair), dirs.ts (walkDirs), remove.ts and verified.ts
 * (removeTree), copy.ts, file.ts and metadata.ts (copyEntry, ensureDir, setMetadata).
 */
export { relToBuffer, relFromBuffer, displayPath, joinRel, splitRel, parentOf, nameOf } from './names.js';
export { typeOf, type Identity, type EntryType, type EntryInfo } from './entry.js';
export {
  TreeChangedError,
  IdentityError,
  NotADirectoryError,
  CrossDeviceError,
  UnsupportedEntryError,
  DestinationChangedError,
  UnverifiedEntriesError,
} from './errors.js';
export { DirRef, at, openDir, reopen, openChild, statAt, listNames } from './dir.js';
export { WALK_HELD_BUDGET, type WalkOptions, type WalkResult } from './context.js';
export { isZfsControlDir } from './list.js';
export { walk, treeDigest } from './walk.js';
export { walkPair, type PairVisit, type WalkPairOptions } from './pair.js';
export { walkDirs, type DirVisitor } from './dirs.js';
export { removeTree, type RemoveOptions } from './remove.js';
export { VerifiedSet } from './verified.js';
export { copyEntry, ensureDir, type CopyOptions } from './copy.js';
export { setMetadata } from './metadata.js';
export { copySparse, stampSeconds } from './file.js';
