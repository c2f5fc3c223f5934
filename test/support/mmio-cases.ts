// The instruction forms that touch MMIO (issue 13), each with the exact accesses it must make.
// Registers are compared at the width the instruction writes (32-bit results zero-extend in long
// mode; real and protected mode leave the upper half 0).

import {
  type Code,
  EAX,
  EBX,
  ECX,
  EDI,
  ESI,
  ESP,
  type GuestCase,
  MODES,
  type Mode,
  type Model,
  RAM,
  WIN,
} from "./mmio-guests.js";

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const le64 = (v: bigint): number[] => [...le32(Number(v & 0xffffffffn)), ...le32(Number(v >> 32n))];
const M32 = 0xffffffffn;
const LONG: readonly Mode[] = ["long"];
const NO_SSE_MOVQ = "KVM's emulator has no MOVQ xmm (F3 0F 7E, 66 0F D6): emulation failure";

/** the register value a stack or index register holds for linear address `lin` in this mode */
function regFor(mode: Mode, lin: number): bigint {
  return BigInt(mode === "real" && lin >= 0xffff0 ? lin - 0xffff0 : lin);
}

/** SS:ESP into the window (real mode: SS = 0xFFFF) */
function stackAt(c: Code, lin: number): void {
  if (c.real) c.raw(0xb8, 0xff, 0xff, 0x8e, 0xd0); // mov ax, 0xffff; mov ss, ax
  c.movAddr(ESP, lin);
}

const load = (
  name: string,
  modes: readonly Mode[],
  prefix: (c: Code) => number[],
  opcode: number[],
  at: number,
  size: number,
): GuestCase => ({
  name,
  modes,
  code: (c) => {
    c.movAddr(EBX, at);
    c.mem(prefix(c), opcode, EAX, EBX);
  },
  expect: (m) => ({ rax: m.r(at, size) }),
});

const store = (
  name: string,
  modes: readonly Mode[],
  prefix: (c: Code) => number[],
  opcode: number[],
  at: number,
  size: number,
): GuestCase => ({
  name,
  modes,
  code: (c) => {
    if (c.long) c.raw(0x48, 0xb8, ...le64(0xfedcba9876543210n));
    else c.mov(EAX, 0x76543210);
    c.movAddr(EBX, at);
    c.mem(prefix(c), opcode, EAX, EBX);
  },
  expect: (m, mode) => {
    const rax = mode === "long" ? 0xfedcba9876543210n : 0x76543210n;
    m.w(at, size, rax);
    return { rax };
  },
});

/** xmm0 <- 8 or 16 bytes at `from`, then stored at `to` (MOVQ: F3 0F 7E / 66 0F D6, MOVDQU: F3 0F 6F / 7F) */
function xmmMove(c: Code, bytes: 8 | 16, from: number, to: number, aligned = false): void {
  const ld = bytes === 8 ? [[0xf3], [0x0f, 0x7e]] : aligned ? [[], [0x0f, 0x28]] : [[0xf3], [0x0f, 0x6f]];
  const st = bytes === 8 ? [[0x66], [0x0f, 0xd6]] : aligned ? [[], [0x0f, 0x29]] : [[0xf3], [0x0f, 0x7f]];
  c.movAddr(EBX, from);
  c.mem(ld[0]!, ld[1]!, 0, EBX);
  c.movAddr(EBX, to);
  c.mem(st[0]!, st[1]!, 0, EBX);
}

/** reads `size` bytes at `lin`, from the RAM partner below WIN or the window (logged) */
function readAny(m: Model, lin: number, size: number): bigint {
  return lin >= WIN ? m.r(lin, size) : m.ramRead(lin, size);
}

export const CASES: GuestCase[] = [
  // ------------------------------------------------------------------ every width, loads and stores
  load("MOV AL, m8", MODES, () => [], [0x8a], WIN + 0x11, 1),
  load("MOV AX, m16", MODES, (c) => c.o16, [0x8b], WIN + 0x12, 2),
  load("MOV EAX, m32", MODES, (c) => c.o32, [0x8b], WIN + 0x14, 4),
  load("MOV RAX, m64 (one 8-byte access)", LONG, () => [0x48], [0x8b], WIN + 0x18, 8),
  store("MOV m8, AL", MODES, () => [], [0x88], WIN + 0x51, 1),
  store("MOV m16, AX", MODES, (c) => c.o16, [0x89], WIN + 0x52, 2),
  store("MOV m32, EAX", MODES, (c) => c.o32, [0x89], WIN + 0x54, 4),
  store("MOV m64, RAX (one 8-byte access)", LONG, () => [0x48], [0x89], WIN + 0x58, 8),
  {
    name: "MOVQ xmm0, m64 (one 8-byte access, all 64 bits)",
    modes: MODES,
    notOnKvm: NO_SSE_MOVQ,
    code: (c) => xmmMove(c, 8, WIN + 0x20, RAM),
    expect: (m) => {
      m.ramWrite(RAM, 8, m.r(WIN + 0x20, 8));
      return {};
    },
  },
  {
    name: "MOVQ m64, xmm0",
    modes: MODES,
    notOnKvm: NO_SSE_MOVQ,
    code: (c) => xmmMove(c, 8, RAM, WIN + 0x60),
    expect: (m) => {
      m.w(WIN + 0x60, 8, m.ramRead(RAM, 8));
      return {};
    },
  },
  {
    name: "MOVQ mm0, m64 and MOVQ m64, mm0 (MMX: one 8-byte access each)",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0x28);
      c.mem([], [0x0f, 0x6f], 0, EBX);
      c.mem([], [0x0f, 0x7f], 0, EBX, 0x40);
    },
    expect: (m) => {
      m.w(WIN + 0x68, 8, m.r(WIN + 0x28, 8));
      return {};
    },
  },
  {
    name: "MOVQ mm0, m64 across two MMIO pages (3 + 5 bytes)",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0xffd);
      c.mem([], [0x0f, 0x6f], 0, EBX);
      c.movAddr(EBX, RAM);
      c.mem([], [0x0f, 0x7f], 0, EBX);
    },
    expect: (m) => {
      m.ramWrite(RAM, 8, m.r(WIN + 0xffd, 3) | (m.r(WIN + 0x1000, 5) << 24n));
      return {};
    },
  },
  {
    name: "MOVDQU xmm0, m128 (two 8-byte accesses)",
    modes: MODES,
    code: (c) => xmmMove(c, 16, WIN + 0x31, RAM),
    expect: (m) => {
      m.ramWrite(RAM, 8, m.r(WIN + 0x31, 8));
      m.ramWrite(RAM + 8, 8, m.r(WIN + 0x39, 8));
      return {};
    },
  },
  {
    name: "MOVDQU m128, xmm0",
    modes: MODES,
    code: (c) => xmmMove(c, 16, RAM, WIN + 0x71),
    expect: (m) => {
      m.w(WIN + 0x71, 8, m.ramRead(RAM, 8));
      m.w(WIN + 0x79, 8, m.ramRead(RAM + 8, 8));
      return {};
    },
  },
  {
    name: "MOVAPS xmm0, m128 and MOVAPS m128, xmm0",
    modes: MODES,
    code: (c) => xmmMove(c, 16, WIN + 0x80, WIN + 0x90, true),
    expect: (m) => {
      const lo = m.r(WIN + 0x80, 8);
      const hi = m.r(WIN + 0x88, 8);
      m.w(WIN + 0x90, 8, lo);
      m.w(WIN + 0x98, 8, hi);
      return {};
    },
  },

  // ------------------------------------------------------------------ accesses that cross a page
  {
    name: "MOV EAX, m32 half in RAM, half in MMIO",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN - 2);
      c.mem(c.o32, [0x8b], EAX, EBX);
    },
    expect: (m) => ({ rax: m.ramRead(WIN - 2, 2) | (m.r(WIN, 2) << 16n) }),
  },
  {
    name: "MOV m32, EAX half in RAM, half in MMIO",
    modes: MODES,
    code: (c) => {
      c.mov(EAX, 0xcafebabe);
      c.movAddr(EBX, WIN - 2);
      c.mem(c.o32, [0x89], EAX, EBX);
    },
    expect: (m) => {
      m.ramWrite(WIN - 2, 2, 0xbaben);
      m.w(WIN, 2, 0xcafen);
      return { rax: 0xcafebaben };
    },
  },
  {
    name: "MOV EAX, m32 across two MMIO pages",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0xffe);
      c.mem(c.o32, [0x8b], EAX, EBX);
    },
    expect: (m) => ({ rax: m.r(WIN + 0xffe, 2) | (m.r(WIN + 0x1000, 2) << 16n) }),
  },
  {
    name: "MOV m32, EAX across two MMIO pages",
    modes: MODES,
    code: (c) => {
      c.mov(EAX, 0x0badf00d);
      c.movAddr(EBX, WIN + 0x1ffd);
      c.mem(c.o32, [0x89], EAX, EBX);
    },
    expect: (m) => {
      m.w(WIN + 0x1ffd, 3, 0xadf00dn);
      m.w(WIN + 0x2000, 1, 0x0bn);
      return {};
    },
  },
  {
    name: "MOV RAX, m64: 5 bytes of RAM, 3 of MMIO",
    modes: LONG,
    code: (c) => {
      c.movAddr(EBX, WIN - 5);
      c.mem([0x48], [0x8b], EAX, EBX);
    },
    expect: (m) => ({ rax: m.ramRead(WIN - 5, 5) | (m.r(WIN, 3) << 40n) }),
  },
  {
    name: "MOVQ xmm0, m64 across two MMIO pages",
    modes: MODES,
    notOnKvm: NO_SSE_MOVQ,
    code: (c) => xmmMove(c, 8, WIN + 0xffa, RAM),
    expect: (m) => {
      m.ramWrite(RAM, 8, m.r(WIN + 0xffa, 6) | (m.r(WIN + 0x1000, 2) << 48n));
      return {};
    },
  },
  {
    name: "MOVDQU xmm0, m128: 4 bytes of RAM, 12 of MMIO",
    modes: MODES,
    code: (c) => xmmMove(c, 16, WIN - 4, WIN + 0x200),
    expect: (m) => {
      // the MMIO part, 12 bytes, goes as 8 + 4
      const a = m.r(WIN, 8);
      const b = m.r(WIN + 8, 4);
      const lo = m.ramRead(WIN - 4, 4) | ((a & M32) << 32n);
      const hi = (a >> 32n) | (b << 32n);
      m.w(WIN + 0x200, 8, lo);
      m.w(WIN + 0x208, 8, hi);
      return {};
    },
  },
  {
    name: "MOVDQU m128, xmm0 across two MMIO pages (4 + 8 + 4 bytes)",
    modes: MODES,
    code: (c) => xmmMove(c, 16, RAM, WIN + 0xffc),
    expect: (m) => {
      const lo = m.ramRead(RAM, 8);
      const hi = m.ramRead(RAM + 8, 8);
      m.w(WIN + 0xffc, 4, lo);
      m.w(WIN + 0x1000, 8, (lo >> 32n) | (hi << 32n));
      m.w(WIN + 0x1008, 4, hi >> 32n);
      return {};
    },
  },

  // ------------------------------------------------------------------ read-modify-write
  {
    name: "ADD m32, EAX: one read, one write",
    modes: MODES,
    code: (c) => {
      c.mov(EAX, 0x01010101);
      c.movAddr(EBX, WIN + 0xa0);
      c.mem(c.o32, [0x01], EAX, EBX);
    },
    expect: (m) => {
      m.w(WIN + 0xa0, 4, m.r(WIN + 0xa0, 4) + 0x01010101n);
      return { rax: 0x01010101n };
    },
  },
  {
    name: "OR dword m32, imm32",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0xa4);
      c.mem(c.o32, [0x81], 1, EBX, 0x300, le32(0x80000001));
    },
    expect: (m) => {
      m.w(WIN + 0xa4 + 0x300, 4, m.r(WIN + 0xa4 + 0x300, 4) | 0x80000001n);
      return {};
    },
  },
  {
    name: "AND m32, imm8 (sign-extended)",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0xa8);
      c.mem(c.o32, [0x83], 4, EBX, 0, [0xf0]);
    },
    expect: (m) => {
      m.w(WIN + 0xa8, 4, m.r(WIN + 0xa8, 4) & 0xfffffff0n);
      return {};
    },
  },
  {
    name: "ADD m8, AL",
    modes: MODES,
    code: (c) => {
      c.mov(EAX, 0x7f);
      c.movAddr(EBX, WIN + 0xad);
      c.mem([], [0x00], EAX, EBX);
    },
    expect: (m) => {
      m.w(WIN + 0xad, 1, m.r(WIN + 0xad, 1) + 0x7fn);
      return { rax: 0x7fn };
    },
  },
  {
    name: "ADD m64, RAX",
    modes: LONG,
    code: (c) => {
      c.raw(0x48, 0xb8, ...le64(0x0102030405060708n));
      c.movAddr(EBX, WIN + 0xb0);
      c.mem([0x48], [0x01], EAX, EBX);
    },
    expect: (m) => {
      m.w(WIN + 0xb0, 8, m.r(WIN + 0xb0, 8) + 0x0102030405060708n);
      return { rax: 0x0102030405060708n };
    },
  },
  {
    name: "INC m32",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0xb8);
      c.mem(c.o32, [0xff], 0, EBX);
    },
    expect: (m) => {
      m.w(WIN + 0xb8, 4, m.r(WIN + 0xb8, 4) + 1n);
      return {};
    },
  },
  {
    name: "XCHG m32, EAX",
    modes: MODES,
    code: (c) => {
      c.mov(EAX, 0x12345678);
      c.movAddr(EBX, WIN + 0xc0);
      c.mem(c.o32, [0x87], EAX, EBX);
    },
    expect: (m) => {
      const old = m.r(WIN + 0xc0, 4);
      m.w(WIN + 0xc0, 4, 0x12345678n);
      return { rax: old };
    },
  },
  {
    name: "CMPXCHG m32, ECX that succeeds, then one that fails (writes the old value back)",
    modes: MODES,
    code: (c) => {
      c.mov(ECX, 0x600df00d);
      c.movAddr(EBX, WIN + 0xc4);
      c.mem(c.o32, [0x8b], EAX, EBX); // mov eax, [ebx]
      c.mem(c.o32, [0x0f, 0xb1], ECX, EBX); // cmpxchg [ebx], ecx: equal, stores ecx
      c.mem(c.o32, [0x0f, 0xb1], ECX, EBX, 4); // cmpxchg [ebx+4], ecx: eax differs
    },
    expect: (m) => {
      m.r(WIN + 0xc4, 4);
      m.r(WIN + 0xc4, 4);
      m.w(WIN + 0xc4, 4, 0x600df00dn);
      const b = m.r(WIN + 0xc8, 4);
      m.w(WIN + 0xc8, 4, b);
      // the patterns differ, so the second compare fails and loads EAX
      return { rax: b, rcx: 0x600df00dn };
    },
  },

  // ------------------------------------------------------------------ the stack in MMIO
  {
    name: "PUSH EAX and POP ECX with the stack pointer in MMIO",
    modes: MODES,
    code: (c) => {
      stackAt(c, WIN + 0x400);
      c.mov(EAX, 0x5566aabb);
      c.raw(...c.o32, 0x50, ...c.o32, 0x59);
    },
    expect: (m, mode) => {
      const n = mode === "long" ? 8 : 4;
      m.w(WIN + 0x400 - n, n, 0x5566aabbn);
      return { rcx: m.r(WIN + 0x400 - n, n), rsp: regFor(mode, WIN + 0x400) };
    },
  },
  {
    name: "PUSH m and POP m: MMIO to an MMIO stack and back",
    modes: MODES,
    code: (c) => {
      stackAt(c, WIN + 0x500);
      c.movAddr(EBX, WIN + 0xd0);
      c.mem(c.o32, [0xff], 6, EBX); // push [ebx]
      c.mem(c.o32, [0x8f], 0, EBX, 0x10); // pop [ebx+0x10]
    },
    expect: (m, mode) => {
      const n = mode === "long" ? 8 : 4;
      const v = m.r(WIN + 0xd0, n);
      m.w(WIN + 0x500 - n, n, v);
      m.w(WIN + 0xe0, n, m.r(WIN + 0x500 - n, n));
      return { rsp: regFor(mode, WIN + 0x500) };
    },
  },

  // ------------------------------------------------------------------ string instructions
  {
    name: "MOVSD from MMIO to MMIO",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, WIN + 0x600);
      c.movAddr(EDI, WIN + 0x700);
      c.str(...c.o32, 0xa5);
    },
    expect: (m, mode) => {
      m.w(WIN + 0x700, 4, m.r(WIN + 0x600, 4));
      return { rsi: regFor(mode, WIN + 0x604), rdi: regFor(mode, WIN + 0x704) };
    },
  },
  {
    name: "MOVSQ from MMIO to MMIO",
    modes: LONG,
    code: (c) => {
      c.movAddr(ESI, WIN + 0x600);
      c.movAddr(EDI, WIN + 0x700);
      c.raw(0x48, 0xa5);
    },
    expect: (m) => {
      m.w(WIN + 0x700, 8, m.r(WIN + 0x600, 8));
      return { rsi: BigInt(WIN + 0x608), rdi: BigInt(WIN + 0x708) };
    },
  },
  {
    name: "REP MOVSD from MMIO to RAM, the source crossing a page",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, WIN + 0xff8);
      c.movAddr(EDI, RAM);
      c.mov(ECX, 4);
      c.str(0xf3, ...c.o32, 0xa5);
    },
    expect: (m, mode) => {
      for (let i = 0; i < 4; i++) m.ramWrite(RAM + 4 * i, 4, m.r(WIN + 0xff8 + 4 * i, 4));
      return { rcx: 0n, rsi: regFor(mode, WIN + 0x1008), rdi: regFor(mode, RAM + 16) };
    },
  },
  {
    name: "REP MOVSD from RAM to MMIO, the destination crossing a page",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, RAM);
      c.movAddr(EDI, WIN + 0x1ff8);
      c.mov(ECX, 4);
      c.str(0xf3, ...c.o32, 0xa5);
    },
    expect: (m, mode) => {
      for (let i = 0; i < 4; i++) m.w(WIN + 0x1ff8 + 4 * i, 4, m.ramRead(RAM + 4 * i, 4));
      return { rcx: 0n, rsi: regFor(mode, RAM + 16), rdi: regFor(mode, WIN + 0x2008) };
    },
  },
  {
    name: "REP MOVSD from MMIO to MMIO, both crossing a page",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, WIN + 0xff8);
      c.movAddr(EDI, WIN + 0x1ff8);
      c.mov(ECX, 4);
      c.str(0xf3, ...c.o32, 0xa5);
    },
    expect: (m) => {
      for (let i = 0; i < 4; i++) m.w(WIN + 0x1ff8 + 4 * i, 4, m.r(WIN + 0xff8 + 4 * i, 4));
      return { rcx: 0n };
    },
  },
  {
    name: "REP MOVSD whose first element straddles two MMIO pages",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, WIN + 0xffe);
      c.movAddr(EDI, RAM);
      c.mov(ECX, 3);
      c.str(0xf3, ...c.o32, 0xa5);
    },
    expect: (m) => {
      m.ramWrite(RAM, 4, m.r(WIN + 0xffe, 2) | (m.r(WIN + 0x1000, 2) << 16n));
      m.ramWrite(RAM + 4, 4, m.r(WIN + 0x1002, 4));
      m.ramWrite(RAM + 8, 4, m.r(WIN + 0x1006, 4));
      return { rcx: 0n };
    },
  },
  {
    name: "REP MOVSB whose source runs from RAM into MMIO",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, WIN - 4);
      c.movAddr(EDI, WIN + 0x800);
      c.mov(ECX, 8);
      c.str(0xf3, 0xa4);
    },
    expect: (m) => {
      for (let i = 0; i < 8; i++) m.w(WIN + 0x800 + i, 1, readAny(m, WIN - 4 + i, 1));
      return { rcx: 0n };
    },
  },
  {
    name: "REP STOSD into MMIO across a page",
    modes: MODES,
    code: (c) => {
      c.mov(EAX, 0xa5a50001);
      c.movAddr(EDI, WIN + 0x1ff8);
      c.mov(ECX, 4);
      c.str(0xf3, ...c.o32, 0xab);
    },
    expect: (m, mode) => {
      for (let i = 0; i < 4; i++) m.w(WIN + 0x1ff8 + 4 * i, 4, 0xa5a50001n);
      return { rcx: 0n, rdi: regFor(mode, WIN + 0x2008) };
    },
  },
  {
    name: "REP STOSQ into MMIO across a page",
    modes: LONG,
    code: (c) => {
      c.raw(0x48, 0xb8, ...le64(0x8877665544332211n));
      c.movAddr(EDI, WIN + 0xff8);
      c.mov(ECX, 3);
      c.raw(0xf3, 0x48, 0xab);
    },
    expect: (m) => {
      for (let i = 0; i < 3; i++) m.w(WIN + 0xff8 + 8 * i, 8, 0x8877665544332211n);
      return { rcx: 0n };
    },
  },
  {
    name: "REP LODSD from MMIO",
    modes: MODES,
    code: (c) => {
      c.movAddr(ESI, WIN + 0x900);
      c.mov(ECX, 3);
      c.str(0xf3, ...c.o32, 0xad);
    },
    expect: (m) => {
      m.r(WIN + 0x900, 4);
      m.r(WIN + 0x904, 4);
      return { rax: m.r(WIN + 0x908, 4), rcx: 0n };
    },
  },

  // ------------------------------------------------------------------ in loops (blocks, compiled blocks)
  {
    name: "a loop of loads and read-modify-writes, 20 times (blocks and compiled blocks)",
    modes: MODES,
    code: (c) => {
      c.movAddr(EBX, WIN + 0xfd0);
      c.mov(ECX, 20);
      c.label("loop");
      c.mem(c.o32, [0x8b], EAX, EBX); // mov eax, [ebx]
      c.mem(c.o32, [0x01], EAX, EBX, 0x100); // add [ebx+0x100], eax
      c.raw(...c.o32, 0x83, 0xc3, 0x04); // add ebx, 4
      c.raw(...c.o32, 0xff, 0xc9); // dec ecx
      c.jShort(5, "loop"); // jnz
    },
    expect: (m) => {
      let a = 0n;
      for (let i = 0; i < 20; i++) {
        const at = WIN + 0xfd0 + 4 * i;
        a = m.r(at, 4);
        m.w(at + 0x100, 4, m.r(at + 0x100, 4) + a);
      }
      return { rax: a, rcx: 0n };
    },
  },
];
