/**
 * Mounts, from /proc/self/mountinfo. (Processes holding a tree are found by inode in holders.ts.)
 */
import { readFile } from 'node:fs/promises';

/** Decodes the octal escapes (\040 and the like) of /proc/self/mountinfo. */
export function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points strictly below `dir` (what `rm -r` or a copy would cross into). */
export async function mountsBelow(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = unescapeMountPath(field);
    if (point.startsWith(`${dir}/`)) found.push(point);
  }
  return found;
}
