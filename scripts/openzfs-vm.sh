#!/usr/bin/env bash
# openzfs-vm.sh: run one command on real kernel OpenZFS, in a throwaway QEMU guest.
#
#   scripts/openzfs-vm.sh [options] [--] COMMAND [ARG...]
#   scripts/openzfs-vm.sh --build           only build what is missing, then exit
#
# These machines have no ZFS kernel module (and no usable KVM), so the guest is pure QEMU
# emulation (TCG) of Debian 12's own 6.1 kernel with OpenZFS built from bookworm-backports'
# zfs-dkms source. Everything comes from Debian's archive (apt-get download + dpkg -x) into a
# cache directory; on the host only qemu-system-x86, cpio, gcc-12, make and binutils are
# installed. The host's zfs-fuse is left alone.
#
# Inside the guest the host's / is visible read-only (9p) under a tmpfs overlay, so node,
# rsync, coreutils, this checkout and its node_modules are at the same paths, writable, and
# every write is thrown away when the guest stops. /tmp, /run and /var/tmp are fresh tmpfs
# (or /var/tmp is an ext4 scratch disk with -d); a current directory below one of them (a
# checkout in /tmp) is shown as the rest of /, read-only under a throwaway layer. OpenZFS's
# zfs, zpool, mount.zfs ... shadow zfs-fuse's inside the guest only. There is no network
# and no udev: use pools on files.
# COMMAND runs as root in the current directory; its output (stdout and stderr together) is
# streamed here and its exit status is this script's (124: -t timeout; 125: the guest died).
#
# Options:
#   -e VAR=VALUE  set VAR for COMMAND (repeatable)
#   -w DIR        share host DIR read-write at the same path (repeatable), e.g. for results
#   -d GIB        attach a sparse scratch disk of GIB GiB, ext4, mounted on the guest's /var/tmp
#   -t SECONDS    kill the guest after SECONDS (default $ZDC_VM_TIMEOUT or 3600)
#   -v            print the guest's kernel console afterwards
#   --build       build what is missing and exit
#
# Environment: ZDC_OPENZFS_CACHE (default /var/cache/zfs-dynamic-creator/openzfs-vm),
#   ZDC_VM_MEM (MiB, default 3072), ZDC_VM_SMP (default 2), ZDC_OPENZFS_SUITE (default
#   bookworm-backports), ZDC_OPENZFS_VERSION (zfs-dkms/zfsutils-linux version, default 2.3.2-*),
#   ZDC_VM_ACCEL (QEMU accelerator, default tcg: KVM is not usable on the machines this was
#   made on; "kvm" where it works is much faster), ZDC_VM_KEEP=1 keeps the run directory
#   (console log) under /var/tmp.
#
# Safe to run again and concurrently: the build holds a lock on the cache, every artefact is
# built aside and moved into place, and a complete cache boots in seconds with no apt at all.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${ZDC_OPENZFS_CACHE:-/var/cache/zfs-dynamic-creator/openzfs-vm}
SUITE=${ZDC_OPENZFS_SUITE:-bookworm-backports}
ZFS_VERSION=${ZDC_OPENZFS_VERSION:-2.3.2-*}
MEM=${ZDC_VM_MEM:-3072}
SMP=${ZDC_VM_SMP:-2}
TIMEOUT=${ZDC_VM_TIMEOUT:-3600}
INIT_SRC=$HERE/openzfs-vm-init.sh
# in-tree modules the guest loads (their dependencies are added); zfs.ko and spl.ko come on top
GUEST_MODULES="virtio_pci virtio_blk virtio_console virtio_rng 9pnet_virtio 9p overlay ext4 crc32c_generic nfsd"

say() { printf '[openzfs-vm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 2; }

BUILD_ONLY=0 VERBOSE=0 SCRATCH_GIB=
ENVS=() SHARES=()
while [ $# -gt 0 ]; do
  case $1 in
    -e) [[ ${2:-} == [A-Za-z_]*=* ]] || die "-e wants VAR=VALUE"; ENVS+=("$2"); shift 2 ;;
    -w) [ -d "${2:-}" ] || die "-w $2: not a directory"; SHARES+=("$(cd "$2" && pwd)"); shift 2 ;;
    -d) [[ ${2:-} =~ ^[0-9]+$ ]] || die "-d wants a size in GiB"; SCRATCH_GIB=$2; shift 2 ;;
    -t) [[ ${2:-} =~ ^[0-9]+$ ]] || die "-t wants seconds"; TIMEOUT=$2; shift 2 ;;
    -v) VERBOSE=1; shift ;;
    --build) BUILD_ONLY=1; shift ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ "$BUILD_ONLY" = 1 ] || [ $# -gt 0 ] || die "usage: $0 [-e VAR=VALUE] [-w DIR] [-d GIB] [-t SECONDS] [-v] [--] COMMAND [ARG...] | --build"
[ "$(id -u)" = 0 ] || die "run as root"

# ------------------------------------------------------------------ host preparation
BACKPORTS_LIST=/etc/apt/sources.list.d/zfs-dynamic-creator-backports.sources
APT_READY=0
host_packages() {  # host_packages PKG... : install the ones that are missing
  local missing=() p
  for p in "$@"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} = 0 ] && return
  apt_ready
  say "installing on the host: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
apt_ready() {  # bookworm-backports with main and contrib in the sources, and lists for it
  [ "$APT_READY" = 1 ] && return
  local have=0 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # a deb822 stanza or a one-line source naming bookworm-backports with contrib
    if awk -v RS= '/bookworm-backports/ && /contrib/ && !/Enabled: *no/ {found=1} END {exit !found}' "$f" 2>/dev/null \
       && ! grep -qE '^[[:space:]]*#.*bookworm-backports' "$f"; then have=1; fi
  done
  if [ "$have" = 0 ]; then
    say "adding bookworm-backports (main contrib) to the apt sources: $BACKPORTS_LIST"
    cat > "$BACKPORTS_LIST" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  if [ "$have" = 0 ] || ! apt-cache policy zfs-dkms 2>/dev/null | grep -q "$SUITE"; then
    say "apt-get update"
    apt-get update -qq >&2
  fi
  APT_READY=1
}

# ------------------------------------------------------------------ cache layout
mkdir -p "$CACHE"
KERNEL=$CACHE/kernel        # vmlinuz, KVER, modules/*.ko + load.order
ZMOD=$CACHE/zfs-modules     # spl.ko, zfs.ko, VERSION, KVER
USERLAND=$CACHE/userland    # sbin/, lib/, VERSION
INITRD=                     # $CACHE/initrd-<hash of its inputs>.gz, see initrd_path
DEBS=$CACHE/debs
SCRATCH=$CACHE/build

# One initramfs per set of inputs (the guest's /init of this checkout included), so that two
# checkouts sharing the cache never boot each other's /init.
initrd_path() { echo "$CACHE/initrd-$(initrd_stamp | cut -c1-16).gz"; }
initrd_stamp() {
  { sha256sum "$INIT_SRC" | cut -d' ' -f1; cat "$KERNEL/KVER" "$ZMOD/VERSION" "$KERNEL/modules/load.order" 2>/dev/null; } | sha256sum | cut -d' ' -f1
}
cache_complete() {
  [ -f "$KERNEL/vmlinuz" ] && [ -f "$KERNEL/modules/load.order" ] \
    && [ "$(cat "$KERNEL/requested" 2>/dev/null)" = "$GUEST_MODULES" ] \
    && [ -f "$ZMOD/zfs.ko" ] && [ "$(cat "$ZMOD/KVER" 2>/dev/null)" = "$(cat "$KERNEL/KVER")" ] \
    && [ -x "$USERLAND/sbin/zfs" ] \
    && [ -f "$(initrd_path)" ]
}

download() {  # download PKG[=VER|/SUITE]... into $DEBS unless a .deb of that name is there
  local p name
  mkdir -p "$DEBS"
  for p in "$@"; do
    name=${p%%[=/]*}
    compgen -G "$DEBS/${name}_*.deb" >/dev/null && continue
    apt_ready
    (cd "$DEBS" && apt-get download -q "$p" >/dev/null 2>"$SCRATCH/apt.err") \
      || { cat "$SCRATCH/apt.err" >&2; die "apt-get download $p failed"; }
  done
}
debfile() { compgen -G "$DEBS/${1}_*.deb" | head -1; }

guest_kver() {
  if [ -f "$KERNEL/KVER" ]; then cat "$KERNEL/KVER"; return; fi
  apt_ready
  # the ABI that bookworm's linux-image-amd64 depends on, e.g. 6.1.0-35-amd64
  apt-cache depends linux-image-amd64/bookworm 2>/dev/null \
    | sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*-amd64\)$/\1/p' | head -1
}

# ---- 1. guest kernel and the in-tree modules the guest needs
build_kernel() {
  [ -f "$KERNEL/vmlinuz" ] && [ -f "$KERNEL/modules/load.order" ] \
    && [ "$(cat "$KERNEL/requested" 2>/dev/null)" = "$GUEST_MODULES" ] && return
  local kver; kver=$(guest_kver); [ -n "$kver" ] || die "cannot tell the guest kernel version (apt-cache depends linux-image-amd64)"
  say "guest kernel $kver"
  download "linux-image-$kver"
  local x=$SCRATCH/kernel.new k; rm -rf "$x" "$SCRATCH/kimg"; mkdir -p "$x/modules" "$SCRATCH/kimg"
  dpkg -x "$(debfile "linux-image-$kver")" "$SCRATCH/kimg"
  k=$SCRATCH/kimg/lib/modules/$kver/kernel
  cp "$SCRATCH/kimg/boot/vmlinuz-$kver" "$x/vmlinuz"
  # resolve dependencies from each module's .modinfo section, load order = post-order
  declare -A where=() done_=()
  local f n order=()
  while IFS= read -r f; do n=${f##*/}; n=${n%.ko}; where[${n//-/_}]=$f; done < <(find "$k" -name '*.ko')
  add_module() {
    local m=${1//-/_} d
    [ -n "${done_[$m]:-}" ] && return 0
    done_[$m]=1
    [ -n "${where[$m]:-}" ] || { say "note: $m is built into the kernel or absent"; return 0; }
    for d in $(objcopy -O binary --only-section=.modinfo "${where[$m]}" /dev/stdout | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
      add_module "$d"
    done
    order+=("$m")
  }
  for n in $GUEST_MODULES; do add_module "$n"; done
  for n in "${order[@]}"; do cp "${where[$n]}" "$x/modules/$n.ko"; done
  printf '%s\n' "${order[@]}" > "$x/modules/load.order"
  echo "$GUEST_MODULES" > "$x/requested"
  echo "$kver" > "$x/KVER"
  rm -rf "$KERNEL" "$SCRATCH/kimg"; mv "$x" "$KERNEL"
}

# ---- 2. spl.ko and zfs.ko from zfs-dkms's source, built against Debian's headers (no dkms)
build_zfs_modules() {
  local kver; kver=$(cat "$KERNEL/KVER")
  [ -f "$ZMOD/zfs.ko" ] && [ "$(cat "$ZMOD/KVER" 2>/dev/null)" = "$kver" ] && return
  host_packages gcc-12 make binutils
  say "fetching linux-headers-$kver and zfs-dkms $ZFS_VERSION from $SUITE"
  download "linux-headers-$kver" "zfs-dkms=$ZFS_VERSION"
  local deps p h=$SCRATCH/headers src=$SCRATCH/zfs-src b=$SCRATCH/zfs-build common
  deps=$(dpkg-deb -f "$(debfile "linux-headers-$kver")" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-\(headers\|kbuild\)-[^ ]*\).*/\1/p')
  download $deps
  rm -rf "$h" "$src" "$b"; mkdir -p "$h" "$src"
  dpkg -x "$(debfile "linux-headers-$kver")" "$h"
  for p in $deps; do dpkg -x "$(debfile "$p")" "$h"; done
  # the amd64 headers' Makefile includes the -common tree by its absolute /usr/src path
  sed -i "s#^include /usr/src/#include $h/usr/src/#" "$h/usr/src/linux-headers-$kver/Makefile"
  common=$(cd "$h/usr/src" && compgen -G 'linux-headers-*-common' | head -1)
  [ -n "$common" ] || die "no linux-headers-*-common in the unpacked headers"
  dpkg -x "$(debfile zfs-dkms)" "$src"
  mv "$src"/usr/src/zfs-* "$b"
  local t0=$SECONDS
  say "configuring OpenZFS for $kver (about a minute)"
  (cd "$b" && ./configure --with-config=kernel --with-linux="$h/usr/src/$common" \
       --with-linux-obj="$h/usr/src/linux-headers-$kver" >"$SCRATCH/configure.log" 2>&1) \
    || { tail -40 "$SCRATCH/configure.log" >&2; die "configure failed (log: $SCRATCH/configure.log)"; }
  say "compiling spl.ko and zfs.ko (2-3 minutes on 2 cores)"
  (cd "$b" && make -j"$(nproc)" >"$SCRATCH/make.log" 2>&1) \
    || { tail -40 "$SCRATCH/make.log" >&2; die "make failed (log: $SCRATCH/make.log)"; }
  local x=$SCRATCH/zfs-modules.new; rm -rf "$x"; mkdir -p "$x"
  strip --strip-debug -o "$x/spl.ko" "$b/module/spl.ko"
  strip --strip-debug -o "$x/zfs.ko" "$b/module/zfs.ko"
  dpkg-deb -f "$(debfile zfs-dkms)" Version > "$x/VERSION"
  echo "$kver" > "$x/KVER"
  rm -rf "$ZMOD"; mv "$x" "$ZMOD"
  rm -rf "$h" "$src" "$b"
  say "OpenZFS modules $(cat "$ZMOD/VERSION") built in $((SECONDS - t0)) s"
}

# ---- 3. OpenZFS userland: unpacked here, copied over /usr/sbin only inside the guest
build_userland() {
  local want; want=$(cat "$ZMOD/VERSION")
  [ -x "$USERLAND/sbin/zfs" ] && [ "$(cat "$USERLAND/VERSION" 2>/dev/null)" = "$want" ] && return
  say "fetching the OpenZFS $want userland"
  download "zfsutils-linux=$want"
  local u libs p x=$SCRATCH/userland.new t=$SCRATCH/ul
  u=$(debfile zfsutils-linux)
  [ "$(dpkg-deb -f "$u" Version)" = "$want" ] || die "$u is not version $want (remove $DEBS to refetch)"
  libs=$(dpkg-deb -f "$u" Depends | tr ',' '\n' | sed -n 's/^ *\(lib[a-z0-9]*linux\)\( .*\)\{0,1\}$/\1/p')
  for p in $libs; do download "$p=$want"; done
  rm -rf "$x" "$t"; mkdir -p "$x/sbin" "$x/lib" "$t"
  dpkg -x "$u" "$t"; for p in $libs; do dpkg -x "$(debfile "$p")" "$t"; done
  for p in zfs zpool zdb zstream mount.zfs zgenhostid; do
    if [ -e "$t/sbin/$p" ]; then cp -a "$t/sbin/$p" "$x/sbin/"; elif [ -e "$t/usr/sbin/$p" ]; then cp -a "$t/usr/sbin/$p" "$x/sbin/"; fi
  done
  cp -a "$t"/lib/x86_64-linux-gnu/lib*.so.* "$x/lib/" 2>/dev/null || cp -a "$t"/usr/lib/x86_64-linux-gnu/lib*.so.* "$x/lib/"
  echo "$want" > "$x/VERSION"
  rm -rf "$USERLAND" "$t"; mv "$x" "$USERLAND"
}

# ---- 4. initramfs: busybox, the modules, and the guest's /init
build_initrd() {
  local out; out=$(initrd_path)
  [ -f "$out" ] && return
  host_packages cpio
  download busybox-static
  local r=$SCRATCH/initrd bb=$SCRATCH/bb
  rm -rf "$r" "$bb"; mkdir -p "$r"/{bin,dev,proc,sys,lib/modules} "$bb"
  dpkg -x "$(debfile busybox-static)" "$bb"
  cp "$bb/bin/busybox" "$r/bin/busybox"
  cp "$KERNEL"/modules/*.ko "$KERNEL/modules/load.order" "$ZMOD/spl.ko" "$ZMOD/zfs.ko" "$r/lib/modules/"
  cp "$INIT_SRC" "$r/init"; chmod 755 "$r/init"
  (cd "$r" && find . | cpio -o -H newc --quiet | gzip -1 > "$SCRATCH/initrd.gz.new")
  mv "$SCRATCH/initrd.gz.new" "$out"
  # initramfs images of other inputs not used for a week go
  find "$CACHE" -maxdepth 1 -name 'initrd-*.gz' ! -path "$out" -atime +7 -delete 2>/dev/null || true
  rm -rf "$r" "$bb"
  say "initramfs $(du -h "$out" | cut -f1)"
}

build_all() {
  mkdir -p "$SCRATCH"
  local t0=$SECONDS
  build_kernel
  build_zfs_modules
  build_userland
  build_initrd
  rm -rf "$SCRATCH"
  say "cache ready in $((SECONDS - t0)) s: $CACHE ($(du -sh "$CACHE" | cut -f1); kernel $(cat "$KERNEL/KVER"), OpenZFS $(cat "$ZMOD/VERSION"))"
}

# Everything from here runs inside main(), which bash reads whole before running it: a checkout
# updated while a guest runs (git pull) cannot change what this run does next.
main() {
command -v qemu-system-x86_64 >/dev/null || host_packages qemu-system-x86
if ! cache_complete; then
  exec 9>"$CACHE/.lock"
  flock -n 9 || { say "another build holds the cache lock; waiting"; flock 9; }
  cache_complete || build_all
  flock -u 9; exec 9>&-
fi
[ "$BUILD_ONLY" = 1 ] && { say "cache complete: $CACHE"; exit 0; }
INITRD=$(initrd_path)

# ------------------------------------------------------------------ run
RUN=$(mktemp -d /var/tmp/zdc-openzfs-vm.XXXXXX)
QEMU_PID= TAIL_PID=
cleanup() {
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null
  [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
  if [ "${ZDC_VM_KEEP:-}" = 1 ]; then say "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

q() { printf '%q' "$1"; }
{
  echo "USERLAND=$(q "$USERLAND")"
  echo "SCRATCH_DISK=$([ -n "$SCRATCH_GIB" ] && echo 1 || echo 0)"
  i=0; s=
  for d in "${SHARES[@]}"; do s+="share$i:$d "; i=$((i + 1)); done
  echo "SHARES=$(q "$s")"
  echo "WORKDIR=$(q "$PWD")"
} > "$RUN/config"
{
  echo '#!/bin/bash'
  echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb'
  for e in "${ENVS[@]}"; do echo "export $(q "$e")"; done
  echo "cd $(q "$PWD") || exit 126"
  printf 'exec'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; echo
} > "$RUN/cmd.sh"

ACCEL=${ZDC_VM_ACCEL:-tcg}
[ "$ACCEL" = tcg ] && ACCEL=tcg,thread=multi
QARGS=(-accel "$ACCEL" -cpu max -smp "$SMP" -m "$MEM" -nic none
  -kernel "$KERNEL/vmlinuz" -initrd "$INITRD"
  -append "console=ttyS0 quiet loglevel=3 panic=-1"
  -display none -monitor none -no-reboot -serial "file:$RUN/console.log"
  -device virtio-rng-pci
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
  -virtfs "local,path=$RUN,mount_tag=zdcrun,security_model=none"
  -device virtio-serial-pci -chardev "file,id=out,path=$RUN/out" -device virtserialport,chardev=out,name=zdcout)
i=0
for d in "${SHARES[@]}"; do
  QARGS+=(-virtfs "local,path=$d,mount_tag=share$i,security_model=none,multidevs=remap"); i=$((i + 1))
done
if [ -n "$SCRATCH_GIB" ]; then
  truncate -s "${SCRATCH_GIB}G" "$RUN/scratch.raw"
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$RUN/scratch.raw"
  QARGS+=(-drive "file=$RUN/scratch.raw,if=virtio,format=raw,cache=unsafe,discard=unmap")
fi

: > "$RUN/out"
start=$(date +%s.%N)
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${QARGS[@]}" </dev/null >"$RUN/qemu.log" 2>&1 &
QEMU_PID=$!
# a stdio chardev blocks once stdin is at EOF: the guest writes to a file that we follow
tail -n +1 -s 0.2 -f --pid="$QEMU_PID" "$RUN/out" &
TAIL_PID=$!
qrc=0; wait "$QEMU_PID" || qrc=$?
QEMU_PID=
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=
end=$(date +%s.%N)

if [ -f "$RUN/rc" ]; then rc=$(cat "$RUN/rc")
elif [ "$qrc" = 124 ]; then rc=124; say "timeout after $TIMEOUT s"
else rc=125; fi
if [ "$VERBOSE" = 1 ] || [ ! -f "$RUN/rc" ]; then
  echo "---- qemu (exit $qrc) ----" >&2; cat "$RUN/qemu.log" >&2
  echo "---- guest console (tail) ----" >&2; tail -c 20000 "$RUN/console.log" | tr -d '\r' >&2
fi
say "exit $rc; wall $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s; guest $(cat "$RUN/timings" 2>/dev/null | tr '\n' ' ')"
exit "$rc"
}
main "$@"
exit $?
