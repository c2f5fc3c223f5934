// Locked operations and single-copy atomicity with guest memory shared by vCPU threads
// (Interpreter.attachSharedMemory; lib/cpu/smp-atomic.ts): real worker threads, each with its own
// interpreter over one SharedArrayBuffer, run small loops of locked read-modify-writes on one
// counter; the sum must be exact. Without the mode the same loops lose updates (shown once while
// writing these tests: see the report of issue 11), so the sums prove the atomicity.

import { describe, expect, it } from "vitest";
import { AtomicView } from "../../lib/cpu/smp-memory.js";
import { CODE } from "./guest.js";
import { runVcpus, sharedGuest } from "./smp/threads.js";

const DATA = 0x100000;
const RCX = 1;
const RSI = 6;
const RDI = 7;

function rd(ram: Uint8Array, at: number, bytes: number): bigint {
  let v = 0n;
  for (let k = bytes - 1; k >= 0; k--) v = (v << 8n) | BigInt(ram[at + k]);
  return v;
}
function wr(ram: Uint8Array, at: number, bytes: number, v: bigint): void {
  for (let k = 0; k < bytes; k++) ram[at + k] = Number((v >> BigInt(8 * k)) & 0xffn);
}

interface Loop {
  name: string;
  code: number[];
  /** where the counter is (RDI), its width in bytes and start value */
  at: number;
  bytes: number;
  start?: bigint;
  /** the loop count goes in RSI instead of RCX */
  countInSi?: boolean;
  /** the loop uses memory beside the counter (no guard bytes around it) */
  noGuard?: boolean;
}

// each loop adds 1 to the counter per iteration, then HLT
const LOOPS: Loop[] = [
  // mov eax, 1; lock xadd [rdi], eax; dec ecx; jnz
  {
    name: "LOCK XADD dword",
    code: [0xb8, 1, 0, 0, 0, 0xf0, 0x0f, 0xc1, 0x07, 0xff, 0xc9, 0x75, 0xf3, 0xf4],
    at: DATA,
    bytes: 4,
  },
  // mov eax, 1; lock xadd [rdi], rax
  {
    name: "LOCK XADD qword (carries into the high half and the sign)",
    code: [0xb8, 1, 0, 0, 0, 0xf0, 0x48, 0x0f, 0xc1, 0x07, 0xff, 0xc9, 0x75, 0xf2, 0xf4],
    at: DATA,
    bytes: 8,
    // crosses 2^32 and 2^63 on the way
    start: 0x7ffffffffffff000n,
  },
  // lock inc dword [rdi]
  { name: "LOCK INC dword", code: [0xf0, 0xff, 0x07, 0xff, 0xc9, 0x75, 0xf9, 0xf4], at: DATA, bytes: 4 },
  // lock add byte [rdi], 1 (wraps: the sum modulo 256)
  {
    name: "LOCK ADD byte",
    code: [0xf0, 0x80, 0x07, 0x01, 0xff, 0xc9, 0x75, 0xf8, 0xf4],
    at: DATA + 3,
    bytes: 1,
  },
  // lock add word [rdi], 1 at an odd address (inside an aligned dword)
  {
    name: "LOCK ADD word, misaligned",
    code: [0xf0, 0x66, 0x83, 0x07, 0x01, 0xff, 0xc9, 0x75, 0xf7, 0xf4],
    at: DATA + 1,
    bytes: 2,
  },
  // lock add word [rdi], 1 across a dword boundary inside an aligned qword
  {
    name: "LOCK ADD word, across a dword",
    code: [0xf0, 0x66, 0x83, 0x07, 0x01, 0xff, 0xc9, 0x75, 0xf7, 0xf4],
    at: DATA + 3,
    bytes: 2,
    start: 0xff00n,
  },
  // lock xadd dword inside an aligned qword, not a dword
  {
    name: "LOCK XADD dword, misaligned",
    code: [0xb8, 1, 0, 0, 0, 0xf0, 0x0f, 0xc1, 0x07, 0xff, 0xc9, 0x75, 0xf3, 0xf4],
    at: DATA + 2,
    bytes: 4,
    start: 0x7ffffff0n,
  },
  // lock xadd dword across an 8-byte boundary, and across a page: split locks
  {
    name: "LOCK XADD dword, split",
    code: [0xb8, 1, 0, 0, 0, 0xf0, 0x0f, 0xc1, 0x07, 0xff, 0xc9, 0x75, 0xf3, 0xf4],
    at: DATA + 6,
    bytes: 4,
  },
  {
    name: "LOCK XADD dword, across pages",
    code: [0xb8, 1, 0, 0, 0, 0xf0, 0x0f, 0xc1, 0x07, 0xff, 0xc9, 0x75, 0xf3, 0xf4],
    at: DATA + 0xffe,
    bytes: 4,
  },
  // spin: mov eax, 1; xchg [rdi+8], eax; test eax, eax; jnz spin
  //       mov eax, [rdi]; inc eax; mov [rdi], eax; mov dword [rdi+8], 0; dec ecx; jnz spin
  {
    name: "XCHG spinlock around a plain increment",
    code: [
      0xb8, 1, 0, 0, 0, 0x87, 0x47, 0x08, 0x85, 0xc0, 0x75, 0xf4, 0x8b, 0x07, 0xff, 0xc0, 0x89, 0x07, 0xc7,
      0x47, 0x08, 0, 0, 0, 0, 0xff, 0xc9, 0x75, 0xe3, 0xf4,
    ],
    at: DATA,
    bytes: 4,
    noGuard: true,
  },
  // retry: mov eax, [rdi]; lea edx, [rax+1]; lock cmpxchg [rdi], edx; jnz retry; dec ecx; jnz retry
  {
    name: "LOCK CMPXCHG loop",
    code: [0x8b, 0x07, 0x8d, 0x50, 0x01, 0xf0, 0x0f, 0xb1, 0x17, 0x75, 0xf5, 0xff, 0xc9, 0x75, 0xf1, 0xf4],
    at: DATA,
    bytes: 4,
  },
  // retry: mov eax, [rdi]; mov edx, [rdi+4]; mov ebx, eax; mov ecx, edx; add ebx, 1; adc ecx, 0;
  //        lock cmpxchg8b [rdi]; jnz retry; dec esi; jnz retry
  {
    name: "LOCK CMPXCHG8B loop (64-bit counter)",
    code: [
      0x8b, 0x07, 0x8b, 0x57, 0x04, 0x89, 0xc3, 0x89, 0xd1, 0x83, 0xc3, 0x01, 0x83, 0xd1, 0x00, 0xf0, 0x0f,
      0xc7, 0x0f, 0x75, 0xeb, 0xff, 0xce, 0x75, 0xe7, 0xf4,
    ],
    at: DATA,
    bytes: 8,
    start: 0xfffffff0n,
    countInSi: true,
  },
];

describe("locked read-modify-writes across vCPU threads", () => {
  for (const threads of [2, 4]) {
    for (const loop of LOOPS) {
      it(`${loop.name}: ${threads} threads`, async () => {
        const n = threads === 2 ? 60_000 : 30_000;
        const g = sharedGuest(loop.code, threads);
        const start = loop.start ?? 0n;
        // guard bytes around the counter: a locked write changes only its operand's bytes
        if (!loop.noGuard) g.ram.fill(0x5a, loop.at - 16, loop.at + loop.bytes + 16);
        wr(g.ram, loop.at, loop.bytes, start);
        const regs = { [RDI]: BigInt(loop.at), [loop.countInSi ? RSI : RCX]: BigInt(n) };
        const res = await runVcpus(
          g,
          Array.from({ length: threads }, () => ({ rip: CODE, regs })),
          { shared: process.env.SMP_TEST_MODE_OFF !== "1" },
        );
        for (const r of res) expect(r.stop).toBe(2); // StopReason.Halted
        const mask = (1n << BigInt(8 * loop.bytes)) - 1n;
        expect(rd(g.ram, loop.at, loop.bytes)).toBe((start + BigInt(n * threads)) & mask);
        if (!loop.noGuard) {
          const around = [
            ...g.ram.subarray(loop.at - 16, loop.at),
            ...g.ram.subarray(loop.at + loop.bytes, loop.at + loop.bytes + 16),
          ];
          expect(around.every((b) => b === 0x5a)).toBe(true);
        }
      });
    }
  }
});

// patterns of a qword the writer stores in turn; NaNs of every kind among them
const PATTERN_SETS: bigint[][] = [
  [0n, 0xffffffffffffffffn, 0x7ff0000000000001n, 0xfff8dead0000beefn],
  [0x7ff4000000000000n, 0xfff0000000000001n, 0x7fffffffffffffffn, 0x8000000000000000n],
];

describe("aligned 8-byte stores are single-copy atomic", () => {
  for (const patterns of PATTERN_SETS) {
    it(`a reader never sees a mix of ${patterns.map((p) => p.toString(16)).join(", ")}`, async () => {
      // writer: mov [rdi], rax; mov [rdi], rbx; mov [rdi], rdx; mov [rdi], r8; dec ecx; jnz
      const writer = [
        0x48, 0x89, 0x07, 0x48, 0x89, 0x1f, 0x48, 0x89, 0x17, 0x4c, 0x89, 0x07, 0xff, 0xc9, 0x75, 0xf0, 0xf4,
      ];
      // reader: mov rax, [rdi]; cmp rax, rbx/rdx/r8/r10, je ok (each); inc r9; ok: dec ecx; jnz
      const reader = [
        0x48, 0x8b, 0x07, 0x48, 0x39, 0xd8, 0x74, 0x12, 0x48, 0x39, 0xd0, 0x74, 0x0d, 0x4c, 0x39, 0xc0, 0x74,
        0x08, 0x4c, 0x39, 0xd0, 0x74, 0x03, 0x49, 0xff, 0xc1, 0xff, 0xc9, 0x75, 0xe2, 0xf4,
      ];
      const code = [...writer, ...new Array(0x40 - writer.length).fill(0x90), ...reader];
      const g = sharedGuest(code, 2);
      wr(g.ram, DATA, 8, patterns[0]);
      const [p0, p1, p2, p3] = patterns;
      const res = await runVcpus(
        g,
        [
          { rip: CODE, regs: { 0: p0, 3: p1, 2: p2, 8: p3, [RCX]: 400_000n, [RDI]: BigInt(DATA) } },
          {
            rip: CODE + 0x40,
            regs: { 3: p0, 2: p1, 8: p2, 10: p3, 9: 0n, [RCX]: 400_000n, [RDI]: BigInt(DATA) },
          },
        ],
        { shared: process.env.SMP_TEST_MODE_OFF !== "1" },
      );
      for (const r of res) expect(r.stop).toBe(2);
      // r9 of the reader: reads that matched no pattern
      expect(res[1].lo[9]).toBe(0);
      expect(patterns).toContain(rd(g.ram, DATA, 8));
    });
  }

  it("AtomicView keeps every 64-bit pattern, NaNs included, in every tier", () => {
    const buf = new SharedArrayBuffer(4096);
    const v = new AtomicView(new Uint8Array(buf));
    const raw = new DataView(buf);
    const patterns = [
      ...PATTERN_SETS.flat(),
      0x7ff8000000000000n,
      0xfff8000000000000n,
      0x7ff0000000000000n,
      0x000000000000001n,
    ];
    for (let i = 0; i < 20_000; i++) {
      const p = patterns[i % patterns.length];
      const at = 8 * (i % 512);
      const lo = Number(p & 0xffffffffn) | 0;
      const hi = Number(p >> 32n) | 0;
      v.st64(at, lo, hi);
      expect(raw.getBigUint64(at, true)).toBe(p);
      expect(v.ld64(at)).toBe(lo);
      expect(v.vh).toBe(hi);
    }
  });
});
