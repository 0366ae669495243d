#!/usr/bin/env bash
# The main job end to end on a throwaway pool, as root on a fresh Debian/Ubuntu
# machine: installs what is missing, builds, makes a pool on a file, creates a
# directory the way an instrument would, converts it, shows the result, and
# destroys the pool (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build

pool=zdcdemo
image=/var/tmp/$pool.img
root=/mnt/$pool
work=$(mktemp -d /tmp/zdc-demo.XXXXXX)
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    for _ in 1 2 3 4 5 6 7 8; do zpool destroy -f "$pool" 2>/dev/null && break; sleep 0.5; done
    rm -f "$image"; rm -rf "$root" "$work"
  fi
}
trap cleanup EXIT

zpool list "$pool" >/dev/null 2>&1 && zpool destroy -f "$pool"
truncate -s 256M "$image"
zpool create -f -m "$root" "$pool" "$image"

run="$root/140613_D00123_0001_AC123DEFXX"
mkdir -p "$run/Data/Intensities"
for i in $(seq 1 20); do head -c 100000 /dev/urandom > "$run/Data/Intensities/s_$i.cif"; done
echo '<RunInfo/>' > "$run/RunInfo.xml"
ln -s RunInfo.xml "$run/latest.xml"
chmod 2750 "$run"
echo "== before: a plain directory in $root"
ls -la "$root"
(cd "$run" && find . -type f -exec sha256sum {} + | sort -k2) > "$work/before.sha"

cat > "$work/config.yaml" <<YAML
stateDir: $work/state
roots:
  - rootfs: $pool
    rootdir: $root
    plugins:
      - [name-filter, { regex: '^\d{6}_\w\d{5}_\d{4}_\w{10}$' }]
      - [quiet-wait, { quietSeconds: 1 }]
      - [zfs, { properties: { compression: "on" } }]
      - [rsync, { graceSeconds: 2 }]
      - syslog
YAML

echo "== zfs-dynamic-creator list-plugins"
node dist/src/cli.js --config "$work/config.yaml" list-plugins
echo "== zfs-dynamic-creator handle $run"
node dist/src/cli.js --config "$work/config.yaml" handle "$run"

echo "== after: $run is its own dataset"
zfs list -r -o name,mountpoint,mounted,compression,org.zfs-dynamic-creator:state "$pool"
ls -la "$root" "$run"
(cd "$run" && find . -type f -exec sha256sum {} + | sort -k2) > "$work/after.sha"
if diff -q "$work/before.sha" "$work/after.sha" >/dev/null; then
  echo "== every file is there with the same content ($(wc -l < "$work/after.sha") files)"
else
  echo "== CONTENT DIFFERS"; diff "$work/before.sha" "$work/after.sha"; exit 1
fi
