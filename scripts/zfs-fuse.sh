#!/usr/bin/env bash
# Housekeeping for zfs-fuse, the user-space ZFS the tests use where the kernel has no ZFS module.
# Only the test suite's and the benchmarks' throwaway pools are touched: names that start with
# "zdc" and whose one device is the image /var/tmp/<name>.img. Nothing else on the machine is.
#
#   scripts/zfs-fuse.sh clean      destroy dead throwaway pools: image gone, or not ONLINE
#                                  (left by a killed run; zfs-fuse re-imports them from its cache
#                                  at every start, and each costs it threads and memory)
#   scripts/zfs-fuse.sh diagnose   what zfs-fuse is doing: pools, thread states, where threads wait
#   scripts/zfs-fuse.sh restart    stop zfs-fuse hard (kill -9), detach its mounts (umount -l),
#                                  start it again, then clean. For a zfs-fuse that stopped answering
#                                  (a zfs-fuse defect; kernel OpenZFS has no daemon to restart).
set -euo pipefail

say() { printf 'zfs-fuse: %s\n' "$*" >&2; }

answers() { timeout 20 zpool list -H -o name >/dev/null 2>&1; }

# Whether the pool's one device is its throwaway image, /var/tmp/<name>.img (also when the file is
# gone): a pool that merely happens to be named zdc… is never touched.
throwaway() {
  local paths
  paths=$(timeout 20 zpool status "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u)
  [ "$paths" = "/var/tmp/$1.img" ]
}

clean() {
  local name health n=0
  answers || { say "zpool list does not answer; nothing cleaned"; return 1; }
  while IFS=$'\t' read -r name health; do
    [[ $name =~ ^zdc[a-z0-9]+$ ]] || continue
    if { [ "$health" != ONLINE ] || [ ! -e "/var/tmp/$name.img" ]; } && throwaway "$name"; then
      if timeout 60 zpool destroy -f "$name" >/dev/null 2>&1; then
        n=$((n + 1))
        rm -f "/var/tmp/$name.img"
        rmdir "/mnt/$name" 2>/dev/null || true
      else
        say "could not destroy the dead throwaway pool $name ($health)"
      fi
    fi
  done < <(timeout 20 zpool list -H -o name,health 2>/dev/null)
  [ $n -eq 0 ] || say "destroyed $n dead throwaway pool(s) left by earlier runs"
}

diagnose() {
  local pid
  pid=$(pgrep -x zfs-fuse | head -1 || true)
  if [ -z "$pid" ]; then say "not running"; return 0; fi
  say "pid $pid, $(ls "/proc/$pid/task" | wc -l) threads"
  echo "-- threads by state and wait channel:"
  local states
  states=$(for t in /proc/"$pid"/task/*; do
    printf '%s %s\n' "$(awk '{print $3}' "$t/stat" 2>/dev/null)" "$({ tr -d '\0' <"$t/wchan"; } 2>/dev/null)"
  done | sort | uniq -c | sort -rn)
  printf '%s\n' "$states" | head -20
  # Its request listener reads each new mount's record from a pipe while it holds the mutex all
  # request threads share; two mounts at once can interleave the records, and the listener then
  # waits for bytes that never come. Seen in CI; plugins/zfs/zfs.ts mounts one at a time for it.
  if printf '%s\n' "$states" | grep -q ' anon_pipe_read$' && sleep 1 && grep -qx anon_pipe_read /proc/"$pid"/task/*/wchan 2>/dev/null; then
    echo "-- WEDGED: a request listener waits in read(2) on zfs-fuse's own new-filesystem pipe (two mounts at once); no file request will be answered until zfs-fuse restarts"
  fi
  echo "-- pools (zpool list, 10 s at most):"
  timeout 10 zpool list -H -o name,health 2>&1 || echo "(no answer)"
  echo "-- zfs-fuse mounts: $(grep -c ' fuse.zfs ' /proc/mounts || true)"
  echo "-- processes in uninterruptible sleep:"
  ps -eo pid,stat,wchan:32,args --no-headers | awk '$2 ~ /^D/' | cut -c1-200 | head -20
}

restart() {
  say "restarting"
  pkill -9 -x zfs-fuse || true
  for _ in $(seq 1 50); do pgrep -x zfs-fuse >/dev/null || break; sleep 0.1; done
  # Its mounts are dead now: detach them so that nothing waits on them.
  awk '$3 == "fuse.zfs" { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$(printf '%b' "$m")" 2>/dev/null || true
  done
  rm -f /var/run/zfs/zfs_socket
  mkdir -p /var/run/zfs /var/lock/zfs
  # Without our descriptors beyond stderr: a daemon that inherited the descriptor of a caller's
  # `flock /var/lock/zdc-itest.lock` would hold that lock for as long as it runs.
  (
    for fd in /proc/self/fd/*; do
      n=${fd##*/}
      [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null
    done
    exec zfs-fuse
  )
  for _ in $(seq 1 100); do answers && break; sleep 0.2; done
  answers || { say "did not answer after a restart"; return 1; }
  clean || true
  say "restarted"
}

case "${1:-}" in
  clean) clean ;;
  diagnose) diagnose ;;
  restart) restart ;;
  *) echo "usage: $0 clean|diagnose|restart" >&2; exit 2 ;;
esac
