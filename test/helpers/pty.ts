/**
 * Runs a command under a pseudo-terminal (Python's pty module: no extra package), as an argument
 * array, never a shell string. The terminal is `columns` wide (set on the child's side before it
 * starts, so that it sees the width from the first moment). Returns what the command wrote to
 * the terminal (stdout and stderr together, as a terminal shows them; "\r\n" as the terminal
 * driver sends it) and its exit code.
 */
import { execa } from 'execa';

const SPAWN = `
import fcntl, os, pty, struct, sys, termios
cols = int(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 50, cols, 0, 0))
    os.execvp(sys.argv[2], sys.argv[2:])
out = sys.stdout.buffer
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out.write(data)
    out.flush()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
`;

export interface PtyResult {
  readonly exitCode: number;
  /** Raw terminal output. */
  readonly output: string;
}

export async function runInPty(
  command: readonly string[],
  options: { env?: Record<string, string>; columns?: number; timeoutMs?: number } = {},
): Promise<PtyResult> {
  const r = await execa('/usr/bin/python3', ['-c', SPAWN, String(options.columns ?? 200), ...command], {
    reject: false,
    stdin: 'ignore',
    cwd: '/',
    ...(options.env ? { env: options.env, extendEnv: false } : {}),
    timeout: options.timeoutMs ?? 170_000,
    stripFinalNewline: false,
  });
  return { exitCode: r.exitCode ?? -1, output: String(r.stdout) };
}
