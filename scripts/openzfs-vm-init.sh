#!/bin/busybox sh
# /init of the guest that scripts/openzfs-vm.sh boots (busybox sh, PID 1).
#
# Stage 1, in the initramfs: load the modules (zfs last), mount the host's / read-only over
# 9p under a tmpfs overlay, fresh tmpfs on /tmp, /run and /var/tmp (a checkout there is shown
# through its own overlay), put OpenZFS's userland
# over /usr/sbin, then switch_root. It must be switch_root and not chroot: ZFS opens file
# vdevs from kernel threads, which share PID 1's root; under a chroot `zpool create` on a
# file fails with "no such pool or dataset".
# Stage 2, PID 1 in the new root: run /run/zdc/cmd.sh with its output on the virtio port
# "zdcout", write its exit status to /run/zdc/rc (the host's run directory), power off.
if [ "$1" != stage2 ]; then
  /bin/busybox --install -s /bin
  export PATH=/bin
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  uptime_s() { cut -d' ' -f1 /proc/uptime; }
  fail() { echo "zdc-init: $*" > /dev/kmsg; echo "zdc-init: $*"; sync; poweroff -f; }

  while read -r m; do
    insmod "/lib/modules/$m.ko" 2>/dev/null || echo "zdc-init: insmod $m failed" > /dev/kmsg
  done < /lib/modules/load.order
  insmod /lib/modules/spl.ko || fail "insmod spl failed"
  # block cloning is on by default in 2.3; say so explicitly so that a later default cannot hide it
  # the ARC is capped so that pools on tmpfs and the tests fit in the guest's memory
  insmod /lib/modules/zfs.ko zfs_bclone_enabled=1 zfs_arc_max=805306368 || fail "insmod zfs failed"
  T_ZFS=$(uptime_s)

  mkdir -p /zdcrun /lower /ovl /newroot
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none zdcrun /zdcrun || fail "no run share"
  . /zdcrun/config
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower || fail "no host root share"
  mount -t tmpfs -o mode=755 tmpfs /ovl
  mkdir -p /ovl/upper /ovl/work
  mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work /newroot || fail "overlay failed"
  R=/newroot
  mount -t proc proc $R/proc
  mount -t sysfs sysfs $R/sys
  mount -t devtmpfs devtmpfs $R/dev
  mkdir -p $R/dev/pts $R/dev/shm
  mount -t devpts devpts $R/dev/pts
  mount -t tmpfs tmpfs $R/dev/shm
  [ -d /sys/module/nfsd ] && mount -t nfsd nfsd $R/proc/fs/nfsd
  for d in /tmp /run /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $R$d; done
  if [ "$SCRATCH_DISK" = 1 ]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.5; done
    mount -t ext4 /dev/vda $R/var/tmp || fail "scratch disk mount failed (block devices: $(ls /sys/block), dev: $(ls /dev | grep vd))"
    chmod 1777 $R/var/tmp
  fi
  mkdir -p $R/run/zdc $R/run/lock $R/run/zdc-init
  mount --move /zdcrun $R/run/zdc
  for s in $SHARES; do
    tag=${s%%:*}; dir=${s#*:}
    mkdir -p "$R$dir"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=mmap "$tag" "$R$dir" || fail "share $dir failed"
  done
  # The command's directory (the checkout) under a directory that is fresh here (/tmp, /run,
  # /var/tmp; CI may clone into /tmp): the host's, read-only under a throwaway layer as / is,
  # at the same path, unless a share already shows it.
  case "$WORKDIR" in
    /tmp/*|/run/*|/var/tmp/*)
      if [ ! -d "$R$WORKDIR" ]; then
        [ -d "/lower$WORKDIR" ] || fail "no $WORKDIR on the host"
        mkdir -p /ovl/wd-upper /ovl/wd-work "$R$WORKDIR"
        mount -t overlay overlay -o "lowerdir=/lower$WORKDIR,upperdir=/ovl/wd-upper,workdir=/ovl/wd-work" "$R$WORKDIR" || fail "no view of $WORKDIR"
      fi ;;
  esac
  # OpenZFS's commands shadow the host's zfs-fuse ones, in the guest only
  # (from the host's / as it is, /lower: a cache under /var/tmp is hidden by the fresh tmpfs in $R)
  [ -x "/lower$USERLAND/sbin/zfs" ] || fail "no OpenZFS userland at $USERLAND on the host"
  cp -a "/lower$USERLAND"/sbin/* $R/usr/sbin/ || fail "copying OpenZFS's commands failed"
  cp -a "/lower$USERLAND"/lib/* $R/usr/lib/x86_64-linux-gnu/ || fail "copying OpenZFS's libraries failed"
  rm -f $R/etc/zfs/zpool.cache
  # a clean NFS export state (the host's files show through the overlay otherwise)
  mkdir -p $R/etc/exports.d $R/var/lib/nfs
  rm -f $R/etc/exports.d/*
  : > $R/etc/exports
  : > $R/var/lib/nfs/etab
  ln -sf /proc/self/mounts $R/etc/mtab
  hostname openzfs-guest
  ZDC_OUT=/dev/console
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = zdcout ] && ZDC_OUT=/dev/${p##*/}
  done
  cp /bin/busybox /init $R/run/zdc-init/
  export ZDC_OUT T_ZFS
  exec switch_root $R /run/zdc-init/busybox sh /run/zdc-init/init stage2
  fail "switch_root failed"
fi

# ---- stage 2
B=/run/zdc-init/busybox
T_READY=$($B cut -d' ' -f1 /proc/uptime)
# run in the background and wait: this shell (PID 1) reaps every orphan the command leaves
/bin/bash /run/zdc/cmd.sh </dev/null >"$ZDC_OUT" 2>&1 &
wait $!
rc=$?
T_DONE=$($B cut -d' ' -f1 /proc/uptime)
echo "zfs-loaded=${T_ZFS}s ready=${T_READY}s done=${T_DONE}s" > /run/zdc/timings
echo "$rc" > /run/zdc/rc
$B sync
$B poweroff -f
