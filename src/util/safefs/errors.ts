/** Errors of the descriptor-based primitives: each a class (callers test `instanceof`, never a message). */
import type { EntryType, Identity } from './entry.js';
import { displayPath } from './names.js';

/** The tree changed under us (an entry vanished, or a name now refers to another inode): walk again. */
export class TreeChangedError extends Error {
  override name = 'TreeChangedError';
  constructor(
    readonly rel: string,
    message: string,
  ) {
    super(message);
  }
}

/** An opened directory is not the one expected (another device/inode). */
export class IdentityError extends TreeChangedError {
  override name = 'IdentityError';
  constructor(
    rel: string,
    readonly path: string,
    readonly expected: Identity,
    readonly actual: Identity,
  ) {
    super(
      rel,
      `${path} is not the directory expected (dev ${actual.dev} inode ${actual.ino}, expected dev ${expected.dev} inode ${expected.ino})`,
    );
  }
}

/** What was to be opened as a directory is a symlink, a file, or something else. */
export class NotADirectoryError extends Error {
  override name = 'NotADirectoryError';
  constructor(
    readonly path: string,
    readonly actualType: EntryType | undefined,
  ) {
    super(
      actualType === 'symlink'
        ? `${path} is a symbolic link, not a directory`
        : `${path} is not a directory${actualType ? ` (a ${actualType})` : ''}`,
    );
  }
}

/** Another filesystem (or a bind mount) inside the tree: refused. */
export class CrossDeviceError extends Error {
  override name = 'CrossDeviceError';
  constructor(
    readonly rel: string,
    readonly path: string,
  ) {
    super(`${path} is on another filesystem or is a mount point; refusing to cross it`);
  }
}

/** A fifo, socket or device where a copy was asked for. */
export class UnsupportedEntryError extends Error {
  override name = 'UnsupportedEntryError';
  constructor(
    readonly rel: string,
    readonly type: EntryType,
  ) {
    super(`${displayPath(rel)} is a ${type}; not copied`);
  }
}

/** The destination of a compare-and-copy is no longer what was judged: not copied (judge again). */
export class DestinationChangedError extends TreeChangedError {
  override name = 'DestinationChangedError';
}

/** Entries a verified removal met that the verification never saw (moved in meanwhile): left where they are. */
export class UnverifiedEntriesError extends Error {
  override name = 'UnverifiedEntriesError';
  constructor(
    /** Paths relative to the removed directory's parent (latin1), the first LEFT_NAMED. */
    readonly rels: readonly string[],
    readonly count: number,
  ) {
    super(
      `${count} entr${count === 1 ? 'y' : 'ies'} the verification never saw (${rels.slice(0, 3).map(displayPath).join(', ')}${count > 3 ? ', …' : ''}) left where ${count === 1 ? 'it is' : 'they are'}, not removed`,
    );
  }
}

export function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
