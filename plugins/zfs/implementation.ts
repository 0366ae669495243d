/**
 * Which ZFS this is, for `doctor`/`status` and for choosing between code paths: kernel OpenZFS
 * (`zfs version` prints the userland and the kernel module versions) or zfs-fuse (which has no
 * `zfs version`; its pools are version 23).
 */
import { CommandError, run } from '../../src/index.js';

export interface ZfsImplementation {
  readonly kind: 'openzfs' | 'zfs-fuse' | 'unknown';
  /** e.g. "2.3.2-2~bpo12+2" (OpenZFS userland), "0.7" (zfs-fuse: no finer version is told) */
  readonly version: string;
  /** OpenZFS: the kernel module's version, when it is loaded */
  readonly kernelModule?: string;
  /** One line for a human: "OpenZFS 2.3.2-2~bpo12+2 (kernel module 2.3.2-2~bpo12+2)" */
  readonly summary: string;
}

/** Parses `zfs version` output (OpenZFS 0.8 and later). */
export function parseZfsVersion(stdout: string): { userland?: string; kernelModule?: string } {
  const userland = /^zfs-(?!kmod-)(\S+)$/m.exec(stdout)?.[1];
  const kernelModule = /^zfs-kmod-(\S+)$/m.exec(stdout)?.[1];
  return { ...(userland ? { userland } : {}), ...(kernelModule ? { kernelModule } : {}) };
}

export async function detectZfs(command = 'zfs'): Promise<ZfsImplementation> {
  try {
    const { stdout } = await run(command, ['version']);
    const { userland, kernelModule } = parseZfsVersion(stdout);
    if (userland) {
      return {
        kind: 'openzfs',
        version: userland,
        ...(kernelModule ? { kernelModule } : {}),
        summary: `OpenZFS ${userland}${kernelModule ? ` (kernel module ${kernelModule})` : ' (no kernel module loaded)'}`,
      };
    }
    return { kind: 'unknown', version: stdout.trim().split('\n')[0] ?? '', summary: `unknown ZFS (${stdout.trim().split('\n')[0] ?? ''})` };
  } catch (error) {
    if (error instanceof CommandError && /unrecognized command 'version'/.test(error.stderr)) {
      return {
        kind: 'zfs-fuse',
        version: '0.7',
        summary: 'zfs-fuse (pool version 23 at most: no overlay, xattrs, ACLs, zfs list -p/-j, rename -u or block cloning)',
      };
    }
    throw error;
  }
}
