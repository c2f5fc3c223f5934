#!/bin/busybox sh
# PID 1 of the Linux lane's guest (scripts/test-linux.mjs). Loads the virtio modules and prints
# "@@linux:" markers the test checks: the CPU the kernel saw, a checksum of generated data, the
# virtio disk's old contents, the ones it writes and reads back past the page cache, the virtio
# entropy source and console; then powers off through ACPI.
/bin/busybox --install -s /bin
export PATH=/bin

mark() { echo "@@linux:$*"; }

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mark init

# virtio_mmio takes its devices from the kernel command line: modprobe would hand them over, insmod
# does not
set -- $(tr ' ' '\n' < /proc/cmdline | sed -n 's/^virtio_mmio\.//p')
while read -r mod; do
  [ -n "$mod" ] || continue
  if [ "$mod" = virtio_mmio ]; then
    insmod "/lib/modules/$mod.ko" "$@" || mark "fail:insmod $mod"
  else
    insmod "/lib/modules/$mod.ko" || mark "fail:insmod $mod"
  fi
done < /modules.list
mark modules

mark "cpus:$(grep -c '^processor' /proc/cpuinfo)"
mark "vendor:$(sed -n 's/^vendor_id[^:]*: //p' /proc/cpuinfo | head -n 1)"
flags=$(sed -n 's/^flags[^:]*: //p' /proc/cpuinfo | head -n 1)
for f in fpu tsc pae cx8 apic cmov pat sse2 lm nx constant_tsc; do
  case " $flags " in *" $f "*) ;; *) mark "missing-flag:$f" ;; esac
done
mark "sum:$(seq 1 50000 | md5sum | cut -d' ' -f1)"

i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 50 ]; do
  sleep 0.1
  i=$((i + 1))
done
if [ -b /dev/vda ]; then
  mark "disk-sectors:$(cat /sys/block/vda/size)"
  before=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -n 1)
  mark "disk-before:$before"
  n=$(echo "$before" | sed -n 's/^nodevmm boot \([0-9]*\)$/\1/p')
  n=$((${n:-0} + 1))
  printf 'nodevmm boot %d\n' "$n" | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null
  seq 1 100000 | dd of=/dev/vda bs=4096 seek=256 conv=fsync 2>/dev/null
  sync
  echo 3 > /proc/sys/vm/drop_caches
  mark "disk-after:$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -n 1)"
  mark "disk-data:$(dd if=/dev/vda bs=4096 skip=256 count=144 2>/dev/null | head -c 588895 | md5sum | cut -d' ' -f1)"
else
  mark "fail:no /dev/vda"
fi

mark "rng:$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
mark "rng-bytes:$(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | wc -c)"
if [ -c /dev/hvc0 ]; then
  echo "@@linux:hello from hvc0" > /dev/hvc0
  mark "hvc0:yes"
else
  mark "hvc0:no"
fi

mark done
poweroff -f
sleep 5
