/** What a verification saw, so that a removal removes only that. */
import { InodeIndex } from '../inodes.js';
import type { EntryType } from './entry.js';

/**
 * The entries one verification saw (type and inode, on the one device of the tree it walked): a
 * sorted typed array per type (util/inodes.ts InodeIndex), 4 to 8 bytes an entry.
 */
export class VerifiedSet {
  private readonly byType = new Map<EntryType, InodeIndex>();
  constructor(readonly dev: number) {}
  /** Owners and modes of directories a crashed removal had locked (see lockDir), by inode. */
  private readonly owners = new Map<number, { uid: number; gid: number; mode: number }>();
  add(e: { type: EntryType; dev: number; ino: number }): void {
    if (e.dev !== this.dev) return;
    let index = this.byType.get(e.type);
    if (index === undefined) this.byType.set(e.type, (index = new InodeIndex(this.dev)));
    index.add(e.ino);
  }
  has(e: { type: EntryType; dev: number; ino: number }): boolean {
    return this.byType.get(e.type)?.has(e.dev, e.ino) ?? false;
  }
  /** A directory found locked by an earlier removal: the owner and mode to give it back. */
  lockedBefore(ino: number, owner: { uid: number; gid: number; mode: number }): void {
    this.owners.set(ino, owner);
  }
  ownerBefore(ino: number): { uid: number; gid: number; mode: number } | undefined {
    return this.owners.get(ino);
  }
  /** Distinct entries held. */
  get size(): number {
    let n = 0;
    for (const index of this.byType.values()) n += index.size;
    return n;
  }
}
