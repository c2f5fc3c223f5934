#!/bin/sh
# Builds the example guests into OUTDIR (default: ../images, the committed images). Used by
# examples/CMakeLists.txt and by test/examples to check that the committed images match these
# sources. Reproducible: fixed flags, relative paths, no build-id, notes, .comment or symbols.
# Tools: CC (gcc), LD (ld), OBJCOPY (objcopy) from the environment or PATH.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../images}
mkdir -p "$out"
out=$(cd "$out" && pwd)
CC=${CC:-gcc}
LD=${LD:-ld}
OBJCOPY=${OBJCOPY:-objcopy}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$here"

CFLAGS="-O2 -std=gnu11 -ffreestanding -fno-builtin -nostdlib -fno-pic -fno-pie -fno-stack-protector \
 -fno-asynchronous-unwind-tables -fno-unwind-tables -fno-ident -fcf-protection=none \
 -fno-tree-loop-distribute-patterns -mgeneral-regs-only -Wall -Wextra -Werror"
C32="-m32 -march=i686"
C64="-m64 -mno-red-zone -march=x86-64"
LDFLAGS="-nostdlib -static -n -s --build-id=none -z noexecstack --no-warn-rwx-segments"

cc32() { $CC $CFLAGS $C32 -c "$1" -o "$tmp/$2"; }
cc64() { $CC $CFLAGS $C64 -c "$1" -o "$tmp/$2"; }
ld32() { out_file=$1; shift; $LD -m elf_i386 $LDFLAGS -T guest.ld -o "$out_file" "$@"; }
ld64() { out_file=$1; shift; $LD -m elf_x86_64 $LDFLAGS -T guest.ld -o "$out_file" "$@"; }

# real-hello.bin: 512-byte boot sector
cc32 real-hello.S real-hello.o
$LD -m elf_i386 $LDFLAGS -T bootsector.ld -o "$tmp/real-hello.elf" "$tmp/real-hello.o"
$OBJCOPY -O binary "$tmp/real-hello.elf" "$out/real-hello.bin"

# protected-hello.elf: ELF32, protected mode
cc32 protected-hello.S protected-hello.o
ld32 "$out/protected-hello.elf" "$tmp/protected-hello.o"

# long-crc.elf: ELF64, long mode, C
cc64 start64.S start64.o
cc64 long-crc.c long-crc.o
ld64 "$out/long-crc.elf" "$tmp/start64.o" "$tmp/long-crc.o"

# multiboot-info.elf: multiboot v1 ELF32 kernel, C
cc32 multiboot-start.S multiboot-start.o
cc32 multiboot-info.c multiboot-info.o
ld32 "$out/multiboot-info.elf" "$tmp/multiboot-start.o" "$tmp/multiboot-info.o"

# smp.elf: multiboot v1 ELF32 kernel, C: finds the CPUs in the ACPI MADT, starts the APs, runs a test
cc32 smp-start.S smp-start.o
cc32 smp.c smp.o
ld32 "$out/smp.elf" "$tmp/smp-start.o" "$tmp/smp.o"

# custom-device.bin: flat, 32-bit protected mode at 0x100000, C
cc32 start32.S start32.o
cc32 custom-device.c custom-device.o
ld32 "$tmp/custom-device.elf" "$tmp/start32.o" "$tmp/custom-device.o"
$OBJCOPY -O binary "$tmp/custom-device.elf" "$out/custom-device.bin"

# hypercall.bin: flat, long mode at 0x100000, C
cc64 hypercall.c hypercall.o
ld64 "$tmp/hypercall.elf" "$tmp/start64.o" "$tmp/hypercall.o"
$OBJCOPY -O binary "$tmp/hypercall.elf" "$out/hypercall.bin"

# the toolchain the images were built with: the match test only compares under the same one
{
  $CC --version | head -n 1
  $LD --version | head -n 1
} >"$out/TOOLCHAIN"
