/** The system's NFS export state, for tests that change it with the real exportfs. */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { parseExportfsVerbose } from '../../plugins/nfs-exports/exports.js';

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
