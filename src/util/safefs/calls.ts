/**
 * lstat and unlink for the per-entry hot paths (walk listings, removal), where a walk makes one
 * call per entry: Node's callback API wrapped once costs about half of what fs/promises does
 * (measured: 11 against 19 µs of process CPU per cached lstat, Node 20, ext4, 32 in flight).
 */
import { lstat as lstatCallback, unlink as unlinkCallback, type PathLike, type Stats } from 'node:fs';

export function lstatEntry(path: PathLike): Promise<Stats> {
  return new Promise((resolve, reject) => lstatCallback(path, (error, st) => (error ? reject(error) : resolve(st))));
}

export function unlinkEntry(path: PathLike): Promise<void> {
  return new Promise((resolve, reject) => unlinkCallback(path, (error) => (error ? reject(error) : resolve())));
}
