// A tiny firmware image for `format: "bios"`, hand-assembled (16-bit real mode) so that no assembler
// is needed. Its last 64 KiB are the ROM's top 64 KiB: F000:xxxx below 1 MiB and FFFF0000 + xxxx
// (where the CPU starts) both reach them.
//   FFF0  jmp near E000                  the reset vector, still in the high alias (CS base FFFF0000)
//   E000  mov byte [cs:F000], 0x55       a write to ROM: dropped
//   E006  mov al, [cs:F000]              reads back the ROM's byte ('A')
//   E00A  out 0xE9, al
//   E00C  jmp far F000:E100              to the copy below 1 MiB, CS base F0000
//   E100  push cs / pop ds, print the string at E200 to port 0xE9, then hlt (interrupts are off)

/** What the ROM writes to the debug console: the byte read back from ROM, then its message. */
export const BIOS_ROM_OUTPUT = "Abios ok\n";

const TOP: [number, number[]][] = [
  [0xfff0, [0xe9, 0x0d, 0xe0]],
  [0xe000, [0x2e, 0xc6, 0x06, 0x00, 0xf0, 0x55]],
  [0xe006, [0x2e, 0xa0, 0x00, 0xf0]],
  [0xe00a, [0xe6, 0xe9]],
  [0xe00c, [0xea, 0x00, 0xe1, 0x00, 0xf0]],
  [0xe100, [0x0e, 0x1f, 0xbe, 0x00, 0xe2, 0xba, 0xe9, 0x00]],
  [0xe108, [0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8]],
  [0xe110, [0xf4]],
  [0xe200, [...new TextEncoder().encode("bios ok\n"), 0]],
  [0xf000, [0x41]],
];

/**
 * A firmware image of `size` bytes whose top 64 KiB hold the code above; every other byte is its
 * offset's 64 KiB page number plus 1 (so tests can tell which part of the image is where).
 */
export function biosRom(size = 0x10000): Uint8Array {
  const rom = new Uint8Array(size);
  for (let i = 0; i < size; i++) rom[i] = ((i >>> 16) + 1) & 0xff;
  const top = size - 0x10000;
  for (const [at, bytes] of TOP) rom.set(bytes, top + at);
  return rom;
}
