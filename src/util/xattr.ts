/**
 * Extended attributes (POSIX ACLs included: system.posix_acl_access and _default) copied from one
 * open inode to another, as rsync -X -A does for the bulk copy. Node has no xattr API: getfattr and
 * setfattr do it, on /proc/<this pid>/fd/N (the inode open here, whatever its path is now).
 * Two short commands per entry: meant for the few entries a catch-up copies.
 */
import { CommandError, run } from '../core/exec.js';

const fdPath = (fd: number): string => `/proc/${process.pid}/fd/${fd}`;

/** Not supported by the filesystem: no attribute can be there. */
const UNSUPPORTED = /Operation not supported/;

/** name -> value ("0x…" hex, as getfattr -e hex prints it) of every extended attribute of an open inode. */
export async function readXattrs(fd: number): Promise<Map<string, string>> {
  const path = fdPath(fd);
  let stdout: string;
  try {
    ({ stdout } = await run('getfattr', ['--absolute-names', '--dump', '--match=-', '--encoding=hex', '--', path]));
  } catch (error) {
    if (error instanceof CommandError && UNSUPPORTED.test(error.stderr)) return new Map();
    throw error;
  }
  const attrs = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    // An empty value is printed as the name alone.
    if (eq < 0) attrs.set(line, '');
    else attrs.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return attrs;
}

/**
 * Gives the inode open as `to` exactly the extended attributes of the one open as `from`: missing
 * ones set, others (an ACL inherited from a default ACL, say) removed. Nothing run when both have none.
 */
export async function copyXattrs(from: number, to: number): Promise<void> {
  const [want, have] = await Promise.all([readXattrs(from), readXattrs(to)]);
  const path = fdPath(to);
  for (const name of have.keys()) {
    if (!want.has(name)) await run('setfattr', ['--remove', name, '--', path]);
  }
  const set = [...want].filter(([name, value]) => have.get(name) !== value);
  if (set.length === 0) return;
  // --restore reads getfattr's own dump format: one run for every attribute.
  const dump = `# file: ${path}\n${set.map(([name, value]) => (value === '' ? `${name}=""` : `${name}=${value}`)).join('\n')}\n`;
  await run('setfattr', ['--restore=-'], { input: dump });
}
