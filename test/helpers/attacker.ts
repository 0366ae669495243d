/**
 * An unprivileged attacker for the shared-root tests: the owner (uid 65534, nobody) of a directory
 * being converted, who keeps full control of it while the tool, running as root, works on it.
 *
 * Once the original is moved into the root-only holding directory, its owner can reach it only
 * through something acquired before the move. The agent here holds a bind mount of their
 * directory in a user+mount namespace of their own (`unshare -Urm` as nobody): it holds no
 * descriptor (so it never counts as a holder and never delays the cleanup), and it reaches the
 * moved-aside original wherever its path now is.
 *
 * Also: a root-only directory outside every root (/root/zdc-secret-XXXX, mode 0700) whose files
 * the attacker wants deleted or read, with a snapshot of names, contents and access times.
 */
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, open, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';

export const NOBODY = 65534;
export const PYTHON = '/usr/bin/python3';

/** [command, args] that runs `command args` as nobody with no supplementary groups. */
export function asNobody(command: string, args: readonly string[]): [string, string[]] {
  return ['setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', command, ...args]];
}

// ---------------------------------------------------------------------------------------------
// The root-only directory the attacker aims at

export interface SecretFile {
  content: string;
  mtimeMs: number;
  atimeMs: number;
}

export interface Secret {
  /** /root/zdc-secret-XXXX, root-owned, 0700. */
  readonly dir: string;
  /** A string found in every secret file and nowhere else. */
  readonly token: string;
  readonly names: readonly string[];
  /** Names, contents and times of everything in it now (read with O_NOATIME: looking does not count as reading). */
  snapshot(): Promise<Map<string, SecretFile>>;
  remove(): Promise<void>;
}

/** The secret content of `name`: the token, padded to `size` bytes (at least the token line). */
function secretContent(token: string, name: string, size: number): string {
  const head = `TOPSECRET ${token} ${name}\n`;
  return head.length >= size ? head : head + 'S'.repeat(size - head.length);
}

/**
 * A root-only directory with files of these names. Access times are set before the modification
 * times, so that (relatime) any read of a file moves its atime: "never read" is checkable.
 */
export async function makeSecret(names: readonly string[], size = 0): Promise<Secret> {
  const dir = await mkdtemp('/root/zdc-secret-');
  await chmod(dir, 0o700);
  const token = randomBytes(12).toString('hex');
  // Times no file of the user's has: a copy by size and time never takes a secret file for the user's.
  const atime = new Date('2001-01-01T00:00:00Z');
  const mtime = new Date('2010-01-01T00:00:00Z');
  for (const name of names) {
    await writeFile(join(dir, name), secretContent(token, name, size), { mode: 0o600 });
    await utimes(join(dir, name), atime, mtime);
  }
  const snapshot = async (): Promise<Map<string, SecretFile>> => {
    const out = new Map<string, SecretFile>();
    for (const name of (await readdir(dir)).sort()) {
      const s = await lstat(join(dir, name));
      const handle = await open(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NOATIME);
      let content: string;
      try {
        content = await handle.readFile('utf8');
      } finally {
        await handle.close();
      }
      out.set(name, { content, mtimeMs: s.mtimeMs, atimeMs: s.atimeMs });
    }
    return out;
  };
  return { dir, token, names, snapshot, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Everything under `root` (never following a symlink) that carries secret content: regular files
 * containing the token, symlinks whose target text does not count (they give no access).
 */
export async function findLeaks(root: string, token: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const path = rel === '' ? root : join(root, rel);
    const s = await lstat(path);
    if (s.isDirectory()) {
      for (const name of await readdir(path)) await walk(rel === '' ? name : join(rel, name));
    } else if (s.isFile() && (await readFile(path)).includes(token)) {
      found.push(rel);
    }
  };
  await walk('');
  return found.sort();
}

// ---------------------------------------------------------------------------------------------
// The user's directory

/** Makes `dir` owned by nobody with files `<sub>/f0000…` of `size` bytes of the user's own content, all owned by nobody. */
export async function makeUserDir(dir: string, layout: Record<string, number>, size = 100): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  await mkdir(dir, { mode: 0o755 });
  await chown(dir, NOBODY, NOBODY);
  for (const [sub, count] of Object.entries(layout)) {
    const base = sub === '' ? dir : join(dir, sub);
    if (sub !== '') {
      await mkdir(base, { mode: 0o755 });
      await chown(base, NOBODY, NOBODY);
    }
    for (let i = 0; i < count; i++) {
      const name = fileName(i);
      const head = `user data ${sub}/${name}\n`;
      const content = head + 'u'.repeat(Math.max(0, size - head.length));
      await writeFile(join(base, name), content);
      await chown(join(base, name), NOBODY, NOBODY);
      files.set(sub === '' ? name : `${sub}/${name}`, content);
    }
  }
  return files;
}

export function fileName(i: number): string {
  return `f${String(i).padStart(4, '0')}`;
}

/** Every file of `files` is at its path under `dir` with its content. Returns what is missing or different. */
export async function missingFiles(dir: string, files: ReadonlyMap<string, string>): Promise<string[]> {
  const bad: string[] = [];
  for (const [rel, content] of files) {
    const now = await readFile(join(dir, rel), 'utf8').catch(() => undefined);
    if (now !== content) bad.push(rel);
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// The agent: nobody, in a user+mount namespace of their own, with a bind mount of their directory

/*
 * Commands on stdin, one per line, fields separated by tabs; one answer line each on stdout.
 *   swap SUB TARGET          rename SUB to SUB.hidden, put a symlink SUB -> TARGET in its place
 *   restore SUB              remove the symlink SUB, rename SUB.hidden back
 *   swap-when-removing SUB TARGET SECONDS
 *                            wait (stat only: no descriptor held) until SUB's mtime changes (an
 *                            entry in it was removed), then swap as above
 *   count SUB                number of entries in SUB
 *   unmount                  give up the bind mount (no way into the original is left)
 *   fetch                    parked agent: take back the descriptor of the directory (see startAgent)
 * Answers: "ok <entries left in SUB.hidden>" / "ok" / "timeout" / "error <message>".
 */
const AGENT = String.raw`
import os, socket, sys, subprocess, time
src, view = sys.argv[1], sys.argv[2]
subprocess.run(['mount', '--bind', src, view], check=True)
os.chdir('/')
back = None
if len(sys.argv) > 3:
    # Parked: the directory's descriptor goes in flight to another user's socket, the mount away.
    back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    back.bind('\0' + sys.argv[4])
    back.listen(1)
    fd = os.open(view, os.O_RDONLY | os.O_DIRECTORY)
    subprocess.run(['umount', '-l', view], check=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect('\0' + sys.argv[3])
    socket.send_fds(s, [b'x'], [fd])
    os.close(fd)
    s.close()
def out(*a):
    print(*a, flush=True)
def swap(p, target):
    os.rename(p, p + '.hidden')
    os.symlink(target, p)
    return len(os.listdir(p + '.hidden'))
out('ready')
for line in sys.stdin:
    cmd, *args = line.rstrip('\n').split('\t')
    try:
        p = os.path.join(view, args[0]) if args else view
        if cmd == 'swap':
            out('ok', swap(p, args[1]))
        elif cmd == 'restore':
            os.unlink(p)
            os.rename(p + '.hidden', p)
            out('ok')
        elif cmd == 'swap-when-removing':
            m0 = os.stat(p).st_mtime_ns
            deadline = time.time() + float(args[2])
            while os.stat(p).st_mtime_ns == m0 and time.time() < deadline:
                time.sleep(0.001)
            if time.time() >= deadline:
                out('timeout')
            else:
                out('ok', swap(p, args[1]))
        elif cmd == 'count':
            out('ok', len(os.listdir(p)))
        elif cmd == 'unmount':
            subprocess.run(['umount', view], check=True)
            out('ok')
        elif cmd == 'fetch':
            c, _ = back.accept()
            _, fds, _, _ = socket.recv_fds(c, 16, 4)
            c.close()
            view = '/proc/self/fd/%d' % fds[0]
            out('ok')
        else:
            out('error unknown command', cmd)
    except Exception as e:
        out('error', repr(e))
`;

export interface Agent {
  /** Sends one command, resolves with its answer line. */
  send(...fields: string[]): Promise<string>;
  stop(): Promise<void>;
  readonly process: ResultPromise;
  /** Where the bind mount is, in the agent's mount namespace. */
  readonly view: string;
  /** A parked agent takes its descriptor back from the friend. */
  fetch(): Promise<void>;
}

/**
 * A friend of the attacker's under another uid (65533) that keeps what the agent parks with it in
 * flight (sent, never received) on its listening socket, and hands it back on `return`.
 */
const FRIEND = String.raw`
import os, socket, sys
park, back = sys.argv[1], sys.argv[2]
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind('\0' + park)
l.listen(4)
print('ready', flush=True)
for line in sys.stdin:
    c, _ = l.accept()
    _, fds, _, _ = socket.recv_fds(c, 16, 4)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect('\0' + back)
    socket.send_fds(s, [b'x'], fds)
    for fd in fds:
        os.close(fd)
    s.close()
    c.close()
    print('ok', flush=True)
`;

/** A child that answers a line for each line it is sent. */
function lineChild(child: ResultPromise): () => Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  const early: string[] = [];
  lines.on('line', (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else early.push(line);
  });
  let errors = '';
  child.stderr!.on('data', (c: Buffer) => (errors += c.toString()));
  return (): Promise<string> =>
    early.length > 0
      ? Promise.resolve(early.shift()!)
      : new Promise((resolve, reject) => {
          waiting.push(resolve);
          void child.then(() => reject(new Error(`the attacker agent exited: ${errors}`)));
        });
}

/**
 * Starts the agent as nobody in a new user+mount namespace, with `userDir` bind-mounted at a
 * fresh directory of nobody's. Resolves once the bind mount is in place.
 *
 * `parked`: the agent then opens the directory, gives up the mount and parks the descriptor in
 * flight on a socket of a friend under another uid (what no holders scan can attribute to the
 * directory's owner), until `fetch()` brings it back; its commands then work through it.
 */
export async function startAgent(userDir: string, opts?: { parked?: boolean }): Promise<Agent> {
  const base = await mkdtemp('/tmp/zdc-attacker-');
  await chmod(base, 0o755);
  const view = join(base, 'view');
  await mkdir(view);
  await chown(view, NOBODY, NOBODY);
  const names = opts?.parked ? [`zdc-park-${randomBytes(6).toString('hex')}`, `zdc-back-${randomBytes(6).toString('hex')}`] : [];
  let friend: { process: ResultPromise; next: () => Promise<string> } | undefined;
  if (opts?.parked) {
    const f = execa('setpriv', ['--reuid=65533', '--regid=65533', '--clear-groups', '--', PYTHON, '-c', FRIEND, ...names], {
      cwd: '/',
      reject: false,
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
    });
    friend = { process: f, next: lineChild(f) };
    const up = await friend.next();
    if (up !== 'ready') throw new Error(`the friend did not start: ${up}`);
  }
  const [cmd, args] = asNobody('unshare', ['-Urm', '--', PYTHON, '-c', AGENT, userDir, view, ...names]);
  const child = execa(cmd, args, { cwd: '/', reject: false, stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', buffer: false });
  const nextLine = lineChild(child);
  const ready = await nextLine();
  if (ready !== 'ready') throw new Error(`attacker agent did not start: ${ready}`);
  const send = (...fields: string[]): Promise<string> => {
    child.stdin!.write(`${fields.join('\t')}\n`);
    return nextLine();
  };
  return {
    process: child,
    view,
    send,
    async fetch() {
      if (!friend) throw new Error('the agent is not parked');
      friend.process.stdin!.write('return\n');
      const [returned, fetched] = await Promise.all([friend.next(), send('fetch')]);
      if (returned !== 'ok' || fetched !== 'ok') throw new Error(`fetch: ${returned} / ${fetched}`);
    },
    async stop() {
      child.stdin!.end();
      friend?.process.stdin!.end();
      await Promise.all([child, friend?.process]);
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** True when `path` exists (lstat). */
export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/** Whether `path` is the mountpoint of a filesystem other than its parent's. */
export async function isMountpoint(path: string, parent: string): Promise<boolean> {
  const [a, b] = await Promise.all([stat(path).catch(() => undefined), stat(parent)]);
  return a !== undefined && a.dev !== b.dev;
}
