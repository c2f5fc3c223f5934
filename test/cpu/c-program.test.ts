// A freestanding C program compiled by gcc -O2 (x86-64, -mpopcnt), run on the interpreter in long
// mode. The expected output is what the same source printed when built hosted and run on the host
// CPU. Source (test/cpu/c-program.test.ts keeps it verbatim below) and build:
//   gcc -O2 -m64 -mpopcnt -ffreestanding -nostdlib -fno-pie -no-pie -fno-stack-protector \
//     -fcf-protection=none -mno-red-zone -static -Wl,-Ttext=0x100000 -Wl,-e,_start prog.c
//   objcopy -O binary -j .text / .rodata / .data
//   expected: gcc -O2 -DHOSTED prog.c && ./a.out
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { hex, makeGuest } from "./guest.js";

const SECTIONS: [number, string][] = [
  // .text
  [
    0x100000,
    `49 b8 c5 4e ec c4 4e ec c4 4e 53 bf 2b 20 10 00 48 83 ec 20 48 8b 0d e5 1f 00 00 0f 1f 44 00 00 48 89 ca 48
     8d 77 f5 48 c1 e2 0d 48 31 ca 48 89 d0 48 c1 e8 07 48 31 d0 48 89 c2 48 c1 e2 11 48 31 c2 89 d0 89 d1 48 69
     c0 d3 4d 62 10 48 c1 e8 26 69 c0 e8 03 00 00 29 c1 48 89 d0 48 c1 e0 0d 89 4f f5 48 31 c2 48 89 d0 48 c1 e8
     07 48 31 d0 48 89 c1 48 c1 e1 11 48 31 c1 48 89 4f fd 66 90 48 89 ca 48 83 c6 01 48 c1 e2 0d 48 31 ca 48 89
     d0 48 c1 e8 07 48 31 d0 48 89 c1 48 c1 e1 11 48 31 c1 48 89 c8 49 f7 e0 48 c1 ea 03 48 8d 04 52 48 8d 14 82
     48 89 c8 48 01 d2 48 29 d0 83 c0 61 88 46 0f 48 39 f7 75 b8 c6 47 10 00 48 83 c7 20 48 81 ff 2b 23 10 00 0f
     85 43 ff ff ff 48 89 0d 1c 1f 00 00 31 f6 31 ff 88 05 2c 22 00 00 c6 05 26 22 00 00 00 0f 1f 00 66 0f 6f 9e
     40 20 10 00 8b 8e 40 20 10 00 89 fa 48 89 f0 0f 29 1c 24 66 0f 6f 9e 50 20 10 00 0f 29 5c 24 10 eb 30 66 90
     66 0f 6f b0 20 20 10 00 66 0f 6f b8 30 20 10 00 83 ea 01 48 83 e8 20 0f 29 b0 60 20 10 00 0f 29 b8 70 20 10
     00 83 fa ff 0f 84 72 02 00 00 3b 88 20 20 10 00 72 ca 8d 42 01 48 98 48 c1 e0 05 48 05 20 20 10 00 66 0f 6f
     1c 24 48 83 c6 20 83 c7 01 0f 29 18 66 0f 6f 5c 24 10 0f 29 58 10 48 81 fe e0 02 00 00 0f 85 6d ff ff ff 48
     ba 83 03 9d 73 b0 0f 65 14 b9 30 20 10 00 48 bf b3 01 00 00 00 01 00 00 0f 1f 40 00 8b 71 f0 4c 8b 49 f8 31
     c0 48 31 f2 49 c1 e9 03 49 89 f0 48 0f af d7 49 31 d1 80 39 00 74 15 66 0f 1f 84 00 00 00 00 00 8d 50 01 80
     3c 11 00 48 89 d0 75 f4 48 69 f6 25 49 92 24 44 89 c2 48 c1 ee 20 29 f2 d1 ea 01 f2 c1 ea 02 8d 34 d5 00 00
     00 00 29 d6 44 89 c2 29 f2 be ff ff ff ff 83 fa 06 74 07 8b 34 95 20 10 10 00 0f af c6 48 83 c1 20 4a 8d 14
     08 48 81 f9 30 23 10 00 75 82 b9 3c 00 00 00 0f 1f 44 00 00 48 89 d0 48 d3 e8 83 e0 0f 0f b6 80 06 10 10 00
     e6 e9 83 e9 04 83 f9 fc 75 e6 b8 0a 00 00 00 e6 e9 48 c7 c7 ac d0 a1 ff 45 31 c0 48 c7 c6 0c fe ff ff 49 ba
     79 78 78 78 78 78 78 78 49 b9 c5 4e ec c4 4e ec c4 4e 66 2e 0f 1f 84 00 00 00 00 00 48 89 f8 49 f7 ea 48 89
     f8 48 81 c7 8f 51 01 00 48 c1 f8 3f 48 c1 fa 03 48 89 d1 48 29 c1 48 89 f0 49 f7 e9 48 89 f0 48 c1 f8 3f 48
     c1 fa 02 48 29 c2 48 8d 04 52 48 8d 14 82 48 89 f0 48 29 d0 48 29 c1 48 89 f0 48 0f af c6 48 89 ca 48 83 c6
     07 48 c1 e8 03 48 01 c2 49 01 d0 48 81 fe f5 01 00 00 75 9c b9 3c 00 00 00 0f 1f 80 00 00 00 00 4c 89 c0 48
     d3 e8 83 e0 0f 0f b6 80 06 10 10 00 e6 e9 83 e9 04 83 f9 fc 75 e6 b8 0a 00 00 00 e6 e9 bb 3f 00 00 00 45 31
     d2 bf 01 00 00 00 45 31 db 41 b8 0d 00 00 00 41 b9 01 00 00 00 0f 1f 00 48 b8 00 00 00 00 00 00 00 40 4c 89
     c9 49 0f af c9 48 83 c1 11 0f 1f 00 48 c1 e8 02 48 39 c1 72 f7 31 d2 0f 1f 44 00 00 48 8d 34 10 48 d1 ea 48
     39 f1 72 06 48 29 f1 48 01 c2 48 c1 e8 02 75 e8 49 63 ca 48 63 c7 4f 8d 4c 49 01 48 01 c8 48 63 cb 4c 01 d8
     48 01 c8 4c 8d 1c 02 41 83 e8 01 74 39 4c 89 c9 31 ff 45 31 d2 48 81 c9 00 00 10 00 f3 49 0f b8 f9 f3 4c 0f
     bc d1 49 0f bd c9 89 cb 83 f3 3f e9 78 ff ff ff 0f 1f 84 00 00 00 00 00 b8 20 20 10 00 e9 9b fd ff ff b9 3c
     00 00 00 90 4c 89 d8 48 d3 e8 83 e0 0f 0f b6 80 06 10 10 00 e6 e9 83 e9 04 83 f9 fc 75 e6 b8 0a 00 00 00 e6
     e9 f2 0f 10 1d 67 0c 00 00 b8 01 00 00 00 66 0f ef c0 66 0f 1f 44 00 00 66 0f ef d2 66 0f 28 cb f2 0f 2a d0
     83 c0 01 f2 0f 5e ca f2 0f 58 c1 83 f8 32 75 e4 f2 0f 59 05 3c 0c 00 00 f2 0f 10 0d 3c 0c 00 00 66 0f 2f c1
     0f 83 22 01 00 00 f2 48 0f 2c d0 b9 3c 00 00 00 0f 1f 84 00 00 00 00 00 48 89 d0 48 d3 e8 83 e0 0f 0f b6 80
     06 10 10 00 e6 e9 83 e9 04 83 f9 fc 75 e6 b8 0a 00 00 00 e6 e9 66 0f 6f 0d c7 0b 00 00 66 0f 6f 1d cf 0b 00
     00 66 0f ef d2 0f 1f 00 66 0f 6f e1 41 83 c0 01 66 0f fe cb 66 0f 6f c4 66 0f 72 f0 02 66 0f fe c4 66 0f 72
     f0 03 66 0f fe c4 66 0f 72 f0 07 66 0f fa c4 66 0f 72 f0 02 66 0f fa c4 66 0f 6f e8 66 0f 72 f5 05 66 0f fa
     e8 66 0f 6f c5 66 0f 72 f0 08 66 0f fa c5 66 0f 72 f0 04 66 0f fe c4 66 0f 72 f4 03 66 0f 72 d0 1b 66 0f ef
     c4 66 0f fe d0 41 81 f8 fa 00 00 00 75 8e 66 0f 6f c2 b9 3c 00 00 00 66 0f 73 d8 08 66 0f fe d0 66 0f 6f c2
     66 0f 73 d8 04 66 0f fe d0 66 0f 7e d2 0f 1f 00 48 89 d0 48 d3 e8 83 e0 0f 0f b6 80 06 10 10 00 e6 e9 83 e9
     04 83 f9 fc 75 e6 b8 0a 00 00 00 e6 e9 b8 64 00 00 00 ba 00 10 10 00 0f 1f 44 00 00 48 83 c2 01 e6 e9 0f b6
     02 84 c0 75 f3 f4 eb fe f2 0f 5c c1 f2 48 0f 2c d0 48 0f ba fa 3f e9 d0 fe ff ff`,
  ],
  // .rodata
  [
    0x101000,
    `64 6f 6e 65 0a 00 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66 00 00 00 00 00 00 00 00 00 00 03 00 00 00
     09 00 00 00 1b 00 00 00 51 00 00 00 f3 00 00 00 d9 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00
     02 00 00 00 03 00 00 00 04 00 00 00 04 00 00 00 04 00 00 00 04 00 00 00 00 00 00 00 00 00 f0 3f 00 00 00 00
     65 cd cd 41 00 00 00 00 00 00 e0 43`,
  ],
  // .data
  [0x102000, `15 7c 4a 7f b9 79 37 9e`],
];

const EXPECTED =
  "8187eb8a84716732\n00000000001205b4\n00000000001241e9\n000000010afb3fda\n00000000003d070a\ndone\n";

const SOURCE = `/* freestanding test program: exercises what gcc -O2 emits (loops, 64-bit math, division,
   struct copies, switch tables, bit tricks, string routines); prints results to port 0xE9 */
typedef unsigned long u64; typedef long i64; typedef unsigned int u32; typedef unsigned char u8;
#ifdef HOSTED
#include <stdio.h>
static void outb(u8 c) { putchar(c); }
#else
static inline void outb(u8 c) { __asm__ volatile("outb %0, $0xe9" :: "a"(c)); }
#endif
static void puts_(const char *s) { while (*s) outb(*s++); }
static void hex64(u64 v) { for (int i = 60; i >= 0; i -= 4) outb("0123456789abcdef"[(v >> i) & 15]); outb('\\n'); }
struct item { u32 key; u64 payload; char name[12]; };
static struct item items[24];
static u64 rng = 0x9e3779b97f4a7c15ul;
static u64 next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static void sort(struct item *a, int n) {
  for (int i = 1; i < n; i++) { struct item t = a[i]; int j = i - 1; while (j >= 0 && a[j].key > t.key) { a[j + 1] = a[j]; j--; } a[j + 1] = t; }
}
static int classify(u32 v) { switch (v % 7) { case 0: return 3; case 1: return 9; case 2: return 27; case 3: return 81; case 4: return 243; case 5: return 729; default: return -1; } }
static u64 isqrt(u64 v) { u64 r = 0, b = 1ul << 62; while (b > v) b >>= 2; while (b) { if (v >= r + b) { v -= r + b; r = (r >> 1) + b; } else r >>= 1; b >>= 2; } return r; }
static unsigned slen(const char *s) { unsigned n = 0; while (s[n]) n++; return n; }
#ifdef HOSTED
int main(void) {
#else
void _start(void) {
#endif
  u64 h = 1469598103934665603ul;
  for (int i = 0; i < 24; i++) { items[i].key = (u32)next() % 1000; items[i].payload = next(); for (int k = 0; k < 11; k++) items[i].name[k] = 'a' + (next() % 26); items[i].name[11] = 0; }
  sort(items, 24);
  for (int i = 0; i < 24; i++) { h ^= items[i].key; h *= 1099511628211ul; h ^= items[i].payload >> 3; h += slen(items[i].name) * classify(items[i].key); }
  hex64(h);
  i64 acc = 0; for (i64 i = -500; i < 500; i += 7) { acc += (i * 12345) / 17 - (i % 13) + (i64)((u64)(i * i) >> 3); }
  hex64((u64)acc);
  u64 s = 0; for (u64 v = 1; v < 2000000; v = v * 3 + 1) s += isqrt(v * v + 17) + __builtin_popcountl(v) + __builtin_ctzl(v | 0x100000) + __builtin_clzl(v);
  hex64(s);
  double d = 0; for (int i = 1; i < 50; i++) d += 1.0 / i; hex64((u64)(d * 1e9));
  u32 m = 0; for (u32 i = 0; i < 1000; i++) m += (i * 2654435761u) >> 27 ^ (i << 3); hex64(m);
  puts_("done\\n");
#ifdef HOSTED
  return 0;
#else
  __asm__ volatile("hlt");
  for (;;) {}
#endif
}
`;

describe("gcc -O2 output", () => {
  it("runs a freestanding C program to the same output as the host CPU", () => {
    const g = makeGuest("long", []);
    for (const [addr, bytes] of SECTIONS) g.ram.set(hex(bytes), addr);
    g.cpu.setControl("cr4", 0x220n);
    g.cpu.setRip(0x100000n);
    g.cpu.setGpr(4, 0x80000n - 8n); // as after a CALL: the ABI keeps RSP+8 16-byte aligned
    const stop = g.run(50_000_000);
    expect(stop).toBe(StopReason.Halted);
    expect(String.fromCharCode(...g.out)).toBe(EXPECTED);
    expect(g.cpu.udTotal).toBe(0);
    expect(SOURCE).toContain("_start");
  });
});
