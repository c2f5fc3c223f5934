#!/bin/sh
# Builds the APIC test guests into OUTDIR (default: this folder, where the images are committed):
# each source as NAME-32.bin (flat, 32-bit protected mode) and NAME-64.bin (flat, long mode),
# linked at 0x10000. test/soft/apic-guests.test.ts (x2apic-guests.test.ts for the x2APIC and
# TSC-deadline ones) rebuilds them when the same binutils is present and checks that the committed
# images match.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
out=$(cd "$out" && pwd)
AS=${AS:-as}
LD=${LD:-ld}
OBJCOPY=${OBJCOPY:-objcopy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$here"
for src in apic-timer ioapic-uart ioapic-pit pic-pit tsc-deadline x2apic-faults x2apic-ipi access-rights; do
  $AS --32 -o "$tmp/$src-32.o" "$src.S"
  $LD -m elf_i386 -nostdlib -static -N -Ttext=0x10000 --build-id=none --no-warn-rwx-segments \
    -e _start -o "$tmp/$src-32.elf" "$tmp/$src-32.o"
  $AS --64 --defsym BITS64=1 -o "$tmp/$src-64.o" "$src.S"
  $LD -m elf_x86_64 -nostdlib -static -N -Ttext=0x10000 --build-id=none --no-warn-rwx-segments \
    -e _start -o "$tmp/$src-64.elf" "$tmp/$src-64.o"
  for bits in 32 64; do
    $OBJCOPY -O binary "$tmp/$src-$bits.elf" "$out/$src-$bits.bin"
    chmod 644 "$out/$src-$bits.bin"
  done
done
# long mode only (FSGSBASE and protection keys exist only there): NAME-64.bin
for src in cpu-features; do
  $AS --64 -o "$tmp/$src-64.o" "$src.S"
  $LD -m elf_x86_64 -nostdlib -static -N -Ttext=0x10000 --build-id=none --no-warn-rwx-segments \
    -e _start -o "$tmp/$src-64.elf" "$tmp/$src-64.o"
  $OBJCOPY -O binary "$tmp/$src-64.elf" "$out/$src-64.bin"
  chmod 644 "$out/$src-64.bin"
done
