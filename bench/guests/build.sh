#!/usr/bin/env bash
# Rebuilds the committed benchmark images (bench/guests/*.bin) from their sources with GNU as, ld
# and objcopy. The images are committed so that the benchmark needs no toolchain.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in mips-real mips-prot mips-long; do
  gcc -E -P -x assembler-with-cpp "$name.S" -o "$tmp/$name.s"
  as --32 -o "$tmp/$name.o" "$tmp/$name.s"
  ld -m elf_i386 -Ttext=0x7c00 -e _start -o "$tmp/$name.elf" "$tmp/$name.o"
  objcopy -O binary -j .text "$tmp/$name.elf" "$name.bin"
  chmod 644 "$name.bin"
  size=$(stat -c %s "$name.bin")
  [ "$size" -eq 512 ] || { echo "$name.bin is $size bytes, expected 512" >&2; exit 1; }
done
echo "built: mips-real.bin mips-prot.bin mips-long.bin"
