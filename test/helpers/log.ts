/** What a stderr log line looks like (src/core/logger.ts), and a syslog receiver, for tests that match them. */
import { execa } from 'execa';

/** The local time at the start of every stderr log line: ISO 8601, milliseconds, UTC offset. */
export const TIME = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d`;

/** The start of a stderr log line outside the journal: `<time> zfs-dynamic-creator: `. */
export const LINE_START = `${TIME} zfs-dynamic-creator: `;

/** A receiver for syslog datagrams on a unix socket (as syslogd binds /dev/log): one line per datagram, newlines inside escaped. */
export const SYSLOG_RECEIVER = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], 'ab', 0)
print('ready', flush=True)
while True:
    data, _ = s.recvfrom(65536)
    out.write(data.replace(b'\\n', b'\\\\n') + b'\\n')
`;

/** Starts SYSLOG_RECEIVER on `socket`, writing to `file`; resolves once it listens. */
export async function startSyslogReceiver(socket: string, file: string): Promise<{ stop(): Promise<void> }> {
  const receiver = execa('/usr/bin/python3', ['-c', SYSLOG_RECEIVER, socket, file], { reject: false, stdin: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    receiver.stdout?.once('data', () => resolve());
    void receiver.then((r) => reject(new Error(`receiver exited: ${String(r.stderr)}`)));
  });
  return {
    async stop() {
      receiver.kill();
      await receiver.catch(() => undefined);
    },
  };
}
