/**
 * A set of inode numbers on one device: a sorted typed array (4 bytes an inode while all fit in
 * 32 bits, 8 bytes otherwise), so a million inodes take 4 to 8 MB.
 */
export class InodeIndex {
  private data: Uint32Array | Float64Array = new Uint32Array(1024);
  private count = 0;
  private sorted = true;

  constructor(readonly dev: number) {}

  add(ino: number): void {
    if (this.data instanceof Uint32Array && ino > 0xffffffff) this.data = Float64Array.from(this.data);
    if (this.count === this.data.length) {
      const bigger = this.data instanceof Uint32Array ? new Uint32Array(this.data.length * 2) : new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    if (this.count > 0 && ino <= this.data[this.count - 1]!) this.sorted = false;
    this.data[this.count++] = ino;
  }

  private finish(): void {
    if (this.sorted) return;
    const view = this.data.subarray(0, this.count);
    view.sort();
    let n = 0;
    for (let i = 0; i < view.length; i++) if (n === 0 || view[i] !== view[n - 1]) view[n++] = view[i]!;
    this.count = n;
    this.sorted = true;
  }

  has(dev: number, ino: number): boolean {
    return dev === this.dev && this.hasInode(ino);
  }

  /** The inode number is held, whatever the device. */
  hasInode(ino: number): boolean {
    this.finish();
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.data[mid]!;
      if (v === ino) return true;
      if (v < ino) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  /** Distinct inodes held. */
  get size(): number {
    this.finish();
    return this.count;
  }

  /** Bytes of the backing array (the index's memory). */
  get byteLength(): number {
    return this.data.byteLength;
  }

  /** Drops spare capacity. */
  compact(): void {
    this.finish();
    this.data = this.data.slice(0, Math.max(this.count, 1));
  }
}
