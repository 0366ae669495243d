#!/usr/bin/env bash
# Installs and starts what zfs-dynamic-creator and its tests need on a Debian or
# Ubuntu machine, as root. Idempotent: run it as often as you like.
#   ZFS: the kernel's OpenZFS when the module is there, else zfs-fuse.
#   rsync, exportfs (nfs-kernel-server), incron, rsyslog, logger, systemd-analyze, groff, man,
#   dpkg-dev, lintian, promtool (the Debian package's build and checks), npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs packages and starts zfs-fuse)" >&2
  exit 1
fi

say() { printf 'setup: %s\n' "$*" >&2; }

kernel_zfs() { [ -d /sys/module/zfs ] || modprobe zfs 2>/dev/null; }

packages=(rsync nfs-kernel-server incron rsyslog acl attr util-linux psmisc)
if ! kernel_zfs; then packages+=(zfs-fuse); elif ! command -v zfs >/dev/null; then packages+=(zfsutils-linux); fi
# systemd-analyze (verify, security) for the tests of contrib/systemd; groff and man for the man page's.
command -v systemd-analyze >/dev/null || packages+=(systemd)
packages+=(groff-base man-db)
# The Debian package's build and checks (scripts/package-deb.mjs, test/integration/deb.test.ts):
# dpkg-deb, dpkg-shlibdeps and strip; lintian; promtool (in Debian's prometheus package).
packages+=(dpkg-dev binutils lintian prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Only promtool is wanted: a Prometheus server this script installed does not keep running.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# ZFS: zfs-fuse runs as a daemon the zfs/zpool commands talk to.
if ! kernel_zfs; then
  if ! pgrep -x zfs-fuse >/dev/null; then
    say "starting zfs-fuse"
    mkdir -p /var/run/zfs /var/lock/zfs
    zfs-fuse
  fi
  for _ in $(seq 1 50); do
    zpool list >/dev/null 2>&1 && break
    sleep 0.2
  done
  zpool list >/dev/null 2>&1 || { say "zfs-fuse did not answer"; exit 1; }
  # Throwaway pools a killed test run or benchmark left (zfs-fuse re-imports them at every start).
  bash scripts/zfs-fuse.sh clean || true
fi

# syslog: a real receiver on /dev/log.
if ! pgrep -x rsyslogd >/dev/null; then
  say "starting rsyslogd"
  rsyslogd 2>/dev/null || rsyslogd -iNONE 2>/dev/null || true
  for _ in $(seq 1 25); do [ -S /dev/log ] && break; sleep 0.2; done
fi

# NFS exports: exportfs reads /etc/exports and /etc/exports.d even without nfsd.
[ -e /etc/exports ] || : > /etc/exports
mkdir -p /etc/exports.d /var/lib/nfs

# npm packages, as locked.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "ready"
