/**
 * What fuser or lsof would find: local processes whose working directory, root,
 * open files or memory mappings lie under a directory. Read from /proc directly.
 */
import { readdir, readlink, readFile } from 'node:fs/promises';

export interface Holder {
  readonly pid: number;
  readonly command: string;
  /** cwd, root, fd N, or map */
  readonly how: string;
  readonly path: string;
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** Processes (other than this one) holding anything under `dir`. Processes we cannot read are passed over. */
export async function holdersUnder(dir: string, limit = 20): Promise<Holder[]> {
  const found: Holder[] = [];
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return found;
  }
  for (const pidText of pids) {
    const pid = Number(pidText);
    if (pid === process.pid) continue;
    const base = `/proc/${pidText}`;
    const hits: { how: string; path: string }[] = [];
    for (const link of ['cwd', 'root']) {
      const target = await readlink(`${base}/${link}`).catch(() => undefined);
      if (target !== undefined && link === 'cwd' && under(target, dir)) hits.push({ how: link, path: target });
    }
    const fds = await readdir(`${base}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`${base}/fd/${fd}`).catch(() => undefined);
      if (target !== undefined && under(target.replace(/ \(deleted\)$/, ''), dir)) hits.push({ how: `fd ${fd}`, path: target });
    }
    const maps = await readFile(`${base}/maps`, 'utf8').catch(() => '');
    if (maps.includes(dir)) {
      for (const line of maps.split('\n')) {
        const idx = line.indexOf('/');
        if (idx >= 0 && under(line.slice(idx), dir)) {
          hits.push({ how: 'map', path: line.slice(idx) });
          break;
        }
      }
    }
    if (hits.length > 0) {
      const command = (await readFile(`${base}/comm`, 'utf8').catch(() => '?')).trim();
      for (const hit of hits) found.push({ pid, command, ...hit });
      if (found.length >= limit) break;
    }
  }
  return found;
}

export function describeHolders(holders: readonly Holder[]): string {
  const byPid = new Map<number, Holder>();
  for (const h of holders) if (!byPid.has(h.pid)) byPid.set(h.pid, h);
  return [...byPid.values()].map((h) => `${h.command}[${h.pid}] (${h.how})`).join(', ');
}

/** Decodes the octal escapes (\040 and the like) of /proc/self/mountinfo. */
function unescapeMountPath(field: string): string {
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
