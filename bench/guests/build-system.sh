#!/usr/bin/env bash
# Rebuilds the committed system-code images (bench/guests/sys-*.bin, for bench/system-code) from
# their sources with GNU as, ld and objcopy. The images are committed so that the benchmark needs
# no toolchain (assembled as ELF64: the 64-bit code has sign-extended 32-bit relocations).
# sys-timer.S gives two images: sys-timer-spin.bin and (-DTIMER_HLT) sys-timer-hlt.bin.
#
#   bench/guests/build-system.sh [OUTDIR]     (default: next to the sources)
set -euo pipefail
out=$(realpath "${1:-$(dirname "$0")}")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
built=()
# image name : source : preprocessor flags
for spec in sys-pf:sys-pf: sys-timer-spin:sys-timer: sys-timer-hlt:sys-timer:-DTIMER_HLT \
  sys-cr3:sys-cr3: sys-invlpg:sys-invlpg: sys-syscall:sys-syscall: sys-int80:sys-int80: \
  sys-pio:sys-pio: sys-mmio:sys-mmio: sys-pause:sys-pause:; do
  IFS=: read -r name src flags <<<"$spec"
  # shellcheck disable=SC2086 # flags is a word list
  gcc -E -P -x assembler-with-cpp $flags "$src.S" -o "$tmp/$name.s"
  as --64 -o "$tmp/$name.o" "$tmp/$name.s"
  ld -m elf_x86_64 -Ttext=0x7c00 -e _start -o "$tmp/$name.elf" "$tmp/$name.o"
  objcopy -O binary -j .text "$tmp/$name.elf" "$out/$name.bin"
  chmod 644 "$out/$name.bin"
  size=$(stat -c %s "$out/$name.bin")
  [ "$size" -eq 512 ] || { echo "$name.bin is $size bytes, expected 512" >&2; exit 1; }
  built+=("$name.bin")
done
echo "built: ${built[*]}"
