/** What a stderr log line looks like (src/core/logger.ts), for tests that match them. */

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
