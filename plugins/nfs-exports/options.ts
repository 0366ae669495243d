/** The nfs-exports plugin's options. */
import * as z from 'zod';
import { parseClients } from './exports.js';

const absolutePath = z.string().regex(/^\/[^\0\n]*$/, 'an absolute path on one line');

export const options = z
  .object({
    mode: z.enum(['exports-file', 'drop-in', 'sharenfs']).default('drop-in'),
    /** The system's exports file: written in 'exports-file' mode, read for clients in every mode. */
    exportsFile: absolutePath.default('/etc/exports'),
    /** Our own file, in 'drop-in' mode. exportfs reads /etc/exports.d/*.exports. */
    dropInFile: absolutePath
      .regex(/\.exports$/, 'a file name ending in .exports (exportfs reads only those)')
      .default('/etc/exports.d/zfs-dynamic-creator.exports'),
    /** Clients for every new export, e.g. "10.0.0.0/8(rw,no_subtree_check) host1(ro)". Default: the rootdir's own. */
    clients: z
      .string()
      .transform((text, ctx) => {
        const parsed = parseClients(text);
        if ('problem' in parsed) {
          ctx.addIssue({ code: 'custom', message: parsed.problem });
          return z.NEVER;
        }
        return parsed.clients;
      })
      .optional(),
    /** The value of the sharenfs property, in 'sharenfs' mode. */
    sharenfs: z
      .string()
      .regex(/^[^\0\n]+$/, 'one line')
      .default('on'),
    /** The sync hook also removes our exports of paths that are no longer filesystems. */
    removeStale: z.boolean().default(false),
    exportfsCommand: z.string().min(1).default('exportfs'),
    /** Removed: sharenfs mode calls zfs with the zfs plugin's `command`; a config that still sets it is told so. */
    zfsCommand: z
      .never({
        error:
          "removed: sharenfs mode runs zfs with the zfs plugin's option command; write it there (['zfs', { command: ... }]) and drop zfsCommand",
      })
      .optional(),
    /** The previous version of a file we write is kept next to it with this suffix. */
    backupSuffix: z
      .string()
      .regex(/^[^/\0\n]+$/, 'a file name suffix without "/"')
      .default('.zfs-dynamic-creator.bak'),
  })
  .strict();

export type Options = z.infer<typeof options>;
