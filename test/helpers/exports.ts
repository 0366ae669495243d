/** The system's NFS export state, for tests that change it with the real exportfs. */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';

export const EXPORTS = '/etc/exports';
export const DROP_IN = '/etc/exports.d/zfs-dynamic-creator.exports';
export const ETAB = '/var/lib/nfs/etab';
const FILES = [EXPORTS, DROP_IN, ETAB, `${EXPORTS}.zfs-dynamic-creator.bak`, `${DROP_IN}.zfs-dynamic-creator.bak`];

/** Saves /etc/exports, the drop-in file, their backups and etab; the returned function puts them back. */
export async function saveExportState(): Promise<() => Promise<void>> {
  const saved = new Map<string, Buffer | undefined>();
  for (const file of FILES) saved.set(file, await readFile(file).catch(() => undefined));
  return async () => {
    for (const [file, content] of saved) {
      if (content === undefined) await rm(file, { force: true });
      else await writeFile(file, content);
    }
    await execa('exportfs', ['-r'], { reject: false });
    const etab = saved.get(ETAB);
    if (etab !== undefined) await writeFile(ETAB, etab);
  };
}

/** The paths `exportfs -v` lists, sorted, each once. */
export async function exported(): Promise<string[]> {
  const out = (await execa('exportfs', ['-v'])).stdout;
  return [...new Set(parseExportfsVerbose(`${out}\n`).map((e) => e.path))].sort();
}

/**
 * Parses `exportfs -v` output into (path, client) pairs. exportfs prints a path
 * of more than 14 bytes followed by "\n\t\t", a shorter one padded to 14 then "\t",
 * and the path itself unescaped (so it may hold spaces and even newlines).
 */
export function parseExportfsVerbose(output: string): { path: string; client: string }[] {
  const out: { path: string; client: string }[] = [];
  const re = /([^]*?)(?:\n\t\t| *\t)([^\s(]*)\(([^)\n]*)\)\n/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(output)) !== null) {
    let path = m[1]!;
    // A short path is padded to 14 columns; a longer one is never padded.
    if (Buffer.byteLength(path) <= 14) path = path.replace(/ +$/, '');
    out.push({ path, client: m[2]! });
  }
  return out;
}
