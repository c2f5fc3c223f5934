#!/bin/busybox sh
# PID 1 of the nested-KVM guest. Loads the modules listed in /modules.list, mounts the host's root
# (9p, read-only) under a tmpfs overlay so the host's programs see a normal writable system, binds the
# writable share at the same absolute path as on the host, loads KVM, and runs the share's run.sh
# chrooted into the host's root. Progress goes to the console as "@@nkvm:" markers the host parses.
/bin/busybox --install -s /bin
export PATH=/bin

stage() { echo "@@nkvm:stage:$*"; }
fail() {
  echo "@@nkvm:fail:$*"
  dmesg | tail -n 12
  [ -w /share ] && echo "$*" > /share/fail
  sync
  poweroff -f
  sleep 5
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# loopback up: tests talk to servers they start on 127.0.0.1 (the GDB stub)
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null
# Keep kernel chatter (9p, kvm notices) off the console the host parses.
echo 1 > /proc/sys/kernel/printk
stage init

while read -r mod; do
  [ -n "$mod" ] || continue
  case "$mod" in
    kvm_amd|kvm) continue ;; # after the share is up, so a failure can be reported there
  esac
  insmod "/lib/modules/$mod.ko" || fail "insmod $mod.ko failed (kernel module needed for the 9p shares)"
done < /modules.list

P9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$P9" host0 /share || fail "mounting the writable share (9p tag host0) failed"
stage share
. /share/guest.env

# cache=loose: the host root is read-only for the guest's lifetime, and node starts ~10x faster.
mount -t 9p -o "$P9,cache=loose,ro" hostroot /lower || fail "mounting the host root (9p tag hostroot) failed"
mkdir -p /rw
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot; then
  # Fall back to the read-only root with a scratch /tmp (the share is not under /tmp: see test-kvm.mjs).
  echo "@@nkvm:note:overlay failed; host root is read-only"
  mount --bind /lower /newroot
  case "$SHARE_PATH" in
    /tmp/*) ;;
    *) mount -t tmpfs tmpfs /newroot/tmp ;;
  esac
fi
mount --bind /share "/newroot$SHARE_PATH" || fail "binding the share at $SHARE_PATH failed"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount --bind /dev /newroot/dev
mkdir -p /newroot/dev/shm && mount -t tmpfs tmpfs /newroot/dev/shm
stage root

while read -r mod; do
  case "$mod" in
    kvm|kvm_amd) ;;
    *) continue ;;
  esac
  insmod "/lib/modules/$mod.ko" ||
    fail "insmod $mod.ko failed (does the QEMU CPU model have +svm? see the kernel log below)"
done < /modules.list
[ -c /dev/kvm ] || fail "/dev/kvm did not appear after loading kvm_amd"
stage kvm

stage run
chroot /newroot /bin/sh "$SHARE_PATH/run.sh" < /dev/null > /share/out 2>&1
rc=$?
echo "$rc" > /share/rc
stage "done $rc"
sync
umount "/newroot$SHARE_PATH" /share 2>/dev/null
poweroff -f
sleep 5
