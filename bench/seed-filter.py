"""The seed's way for bench/startup.ts: what the original Python script did with an incron event
for a name it leaves alone. It parses the same command line (its options, <rootfs> <rootdir>
<filename> <event>), acts only on IN_CREATE,IN_ISDIR, matches the name with re.match against
--only-dirs-matching (default: a name not starting with ".", what the tool's default name-filter
rejects), says it skipped it on stderr (unless -q) and to syslog as the tool does, and exits 0.
"""
import argparse
import re
import sys
import syslog

parser = argparse.ArgumentParser(prog="zfs-dynamic-creator")
parser.add_argument("--delay", type=int, default=0)
parser.add_argument("--add-export", action="store_true")
parser.add_argument("--add-remove-all-exports", action="store_true")
parser.add_argument("--only-dirs-matching", default=r"^[^.]")
parser.add_argument("-q", "--quiet", action="store_true")
parser.add_argument("rootfs")
parser.add_argument("rootdir")
parser.add_argument("filename", nargs="?")
parser.add_argument("event", nargs="?")
args = parser.parse_args()

events = set(re.split(r"[,|]", args.event or ""))
if args.filename is None or not {"IN_CREATE", "IN_ISDIR"} <= events:
    sys.exit(0)
if not re.match(args.only_dirs_matching, args.filename):
    line = f"{args.rootdir}/{args.filename}: skipped: name does not match {args.only_dirs_matching}"
    if not args.quiet:
        print(f"zfs-dynamic-creator: {line}", file=sys.stderr)
    syslog.openlog("zfs-dynamic-creator", 0, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_INFO, line)
    sys.exit(0)
sys.exit(1)  # a name it would convert: not what this benchmark measures
