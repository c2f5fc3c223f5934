// 16-bit stack segments (SS.B = 0) and 16-bit code against the host CPU: directed cases for every
// user-level stack instruction class (PUSH/POP of registers, immediates, memory and segment
// registers, PUSHA(D)/POPA(D), PUSHF(D)/POPF(D), ENTER/LEAVE, near and far CALL/RET with and
// without imm16, POP SS between 16- and 32-bit stacks, #SS where a slot crosses the 64 KiB limit)
// run by the oracle on LDT segments it installs with modify_ldt, and by the interpreter set up
// the same way (support/stack16-harness.ts); registers, flags, RIP, the vector and both ends of
// the stack segment must agree. Hosts whose processor runs no LDT segments (some VMs) skip it.

import { describe, expect, it } from "vitest";
import { hex } from "./guest.js";
import {
  CODE_ADDR,
  type CpuState,
  type OracleCase,
  type OracleResult,
  oracle16UnsupportedReason,
  runOracle,
  SCRATCH_ADDR,
  SCRATCH_SIZE,
  SEL_STACK16,
  STACK16_ADDR,
} from "./support/oracle.js";
import { Stack16Harness } from "./support/stack16-harness.js";

interface Directed {
  name: string;
  bits: 16 | 32;
  stack16: boolean;
  code: string;
  /** registers by number (the rest: 0x11111111 * (r + 1)) */
  regs?: Record<number, number>;
  /** bytes to place in the scratch image (after the pattern) at these offsets */
  bytes?: Record<number, number[]>;
}

// scratch offsets of stack offsets in a stack16 case
const hiEnd = (off: number) => off - 0xfe00;
const loEnd = (off: number) => 512 + off;
const le32 = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];

const CASES: Directed[] = [
  { name: "PUSHAD wrapping SP across 0", bits: 32, stack16: true, code: "60", regs: { 4: 0x12340010 } },
  { name: "POPAD wrapping SP across 0", bits: 32, stack16: true, code: "61", regs: { 4: 0x1234fff0 } },
  { name: "PUSHA/POPA (66)", bits: 32, stack16: true, code: "66 60 66 61", regs: { 4: 0xabcd0004 } },
  {
    name: "PUSH r32/imm32/imm8, POP r32",
    bits: 32,
    stack16: true,
    code: "50 68 78 56 34 12 6a ff 59 5a 5b",
    regs: { 4: 0x77770008 },
  },
  {
    name: "PUSH m32 / POP m32 (addresses in the stack segment's mirror)",
    bits: 32,
    stack16: true,
    code: "ff 35 f0 ff 31 00 8f 05 10 fe 31 00",
    regs: { 4: 0x00010004 },
  },
  {
    name: "PUSHFD/POPFD/PUSHF/POPF",
    bits: 32,
    stack16: true,
    code: "9c 9d 66 9c 66 9d",
    regs: { 4: 0x55550000 },
  },
  {
    name: "ENTER 8,0 / LEAVE",
    bits: 32,
    stack16: true,
    code: "c8 08 00 00 c9",
    regs: { 4: 0x33330010, 5: 0x44440123 },
  },
  {
    name: "ENTER 4,3 (frame pointers through BP)",
    bits: 32,
    stack16: true,
    code: "c8 04 00 03",
    regs: { 4: 0x33330008, 5: 0x44440100 },
  },
  {
    name: "CALL rel32 / RET imm16",
    bits: 32,
    stack16: true,
    code: "e8 03 00 00 00 90 eb 03 c2 08 00",
    regs: { 4: 0x22220004 },
  },
  {
    name: "CALL rel32 at SP 2: #SS",
    bits: 32,
    stack16: true,
    code: "e8 00 00 00 00 58",
    regs: { 4: 0x22220002 },
  },
  { name: "PUSH EAX at SP 2: #SS", bits: 32, stack16: true, code: "50", regs: { 4: 0x00000002 } },
  { name: "POP EAX at SP 0xFFFE: #SS", bits: 32, stack16: true, code: "58", regs: { 4: 0x0000fffe } },
  {
    name: "PUSH DS/POP ES (66), PUSH SS/POP FS",
    bits: 32,
    stack16: true,
    code: "66 1e 66 07 66 16 66 0f a1",
    regs: { 4: 0x11110000 },
  },
  {
    name: "POP SS from the 16-bit stack to the flat one: SP wraps by the old B",
    bits: 32,
    stack16: true,
    code: "17",
    regs: { 4: 0x0001fffc },
    bytes: { [hiEnd(0xfffc)]: le32(0x2b) },
  },
  {
    name: "POP SS from the flat stack to the 16-bit one: ESP moves by the old B",
    bits: 32,
    stack16: false,
    code: "17",
    regs: { 4: SCRATCH_ADDR + 0x10c },
    bytes: { 268: le32(SEL_STACK16) },
  },
  {
    name: "far CALL / RETF 4 straddling SP 0",
    bits: 32,
    stack16: true,
    code: "9a 0c 00 20 00 23 00 eb 06 90 90 90 ca 04 00",
    regs: { 4: 0x44440004 },
  },
  {
    name: "16-bit code: PUSH/CALL/RET imm16 on the 16-bit stack",
    bits: 16,
    stack16: true,
    code: "50 68 34 12 e8 02 00 eb 03 c2 02 00",
    regs: { 4: 0x99990002 },
  },
  {
    name: "16-bit code: PUSHA/PUSHAD/POPAD/POPA",
    bits: 16,
    stack16: true,
    code: "60 66 60 66 61 61",
    regs: { 4: 0x99990010 },
  },
  {
    name: "16-bit code: far CALL / RETF 2",
    bits: 16,
    stack16: true,
    code: "9a 0a 00 0f 00 eb 06 90 90 90 ca 02 00",
    regs: { 4: 0x2 },
  },
  {
    name: "16-bit code: ENTER 6,1 / LEAVE",
    bits: 16,
    stack16: true,
    code: "c8 06 00 01 c9",
    regs: { 4: 0x88880004, 5: 0x12340040 },
  },
  {
    name: "16-bit code on a 32-bit stack uses ESP",
    bits: 16,
    stack16: false,
    code: "50 68 34 12 e8 02 00 eb 03 c2 02 00 60 61 9c 9d",
    regs: { 4: SCRATCH_ADDR + 0x200 },
  },
];

function pattern(): Uint8Array {
  const s = new Uint8Array(SCRATCH_SIZE);
  for (let i = 0; i < s.length; i++) s[i] = (i * 7 + 3) & 0xff;
  return s;
}

function toCase(d: Directed): OracleCase {
  const gpr = new Array<bigint>(16).fill(0n);
  for (let r = 0; r < 8; r++) gpr[r] = BigInt(d.regs?.[r] ?? 0x11111111 * (r + 1)) & 0xffffffffn;
  const scratch = pattern();
  for (const [off, bytes] of Object.entries(d.bytes ?? {})) scratch.set(bytes, Number(off));
  const state: CpuState = { gpr, rflags: 0x202n, rip: 0n, xmm: new Uint8Array(256), scratch };
  return { code: Uint8Array.from(hex(d.code)), bits: d.bits, stack16: d.stack16, state };
}

/** differences between the interpreter's run and the CPU's (low 32 bits of the first 8 registers) */
function compare(got: { vector: number; state: CpuState }, want: OracleResult): string[] {
  const out: string[] = [];
  const h = (v: bigint | number) => `0x${v.toString(16)}`;
  if (got.vector !== want.vector) out.push(`vector ${got.vector}, CPU ${want.vector}`);
  if (got.state.rip !== want.state.rip) out.push(`RIP ${h(got.state.rip)}, CPU ${h(want.state.rip)}`);
  const names = ["EAX", "ECX", "EDX", "EBX", "ESP", "EBP", "ESI", "EDI"];
  for (let r = 0; r < 8; r++) {
    const a = got.state.gpr[r]! & 0xffffffffn;
    const b = want.state.gpr[r]! & 0xffffffffn;
    if (a !== b) out.push(`${names[r]} ${h(a)}, CPU ${h(b)}`);
  }
  const fl = (v: bigint) => v & 0xed5n; // CF PF AF ZF SF IF DF OF
  if (fl(got.state.rflags) !== fl(want.state.rflags))
    out.push(`EFLAGS ${h(got.state.rflags)}, CPU ${h(want.state.rflags)}`);
  const bad: string[] = [];
  for (let i = 0; i < SCRATCH_SIZE; i++) {
    if (got.state.scratch[i] !== want.state.scratch[i])
      bad.push(`[${i}] ${got.state.scratch[i]}/${want.state.scratch[i]}`);
  }
  if (bad.length)
    out.push(`scratch (interpreter/CPU) ${bad.slice(0, 8).join(" ")}${bad.length > 8 ? " ..." : ""}`);
  return out;
}

describe("the 16-bit segment harness (interpreter side, any host)", () => {
  it("PUSHAD on the 16-bit stack: both ends of the segment in the scratch image, ESP's upper half kept", () => {
    const c = toCase(CASES[0]!);
    const r = new Stack16Harness().run(c);
    expect(r.vector).toBe(-1);
    expect(r.state.rip).toBe(BigInt(CODE_ADDR + 1));
    expect(r.state.gpr[4]).toBe(0x1234fff0n);
    const s = r.state.scratch;
    const at = (i: number) => (s[i]! | (s[i + 1]! << 8) | (s[i + 2]! << 16) | (s[i + 3]! << 24)) >>> 0;
    // EAX at SS:0x000C, ECX 0x0008, EDX 0x0004, EBX 0x0000, ESP 0xFFFC, ... EDI 0xFFF0
    expect([at(loEnd(0xc)), at(loEnd(0)), at(hiEnd(0xfffc)), at(hiEnd(0xfff0))]).toEqual([
      0x11111111, 0x44444444, 0x12340010, 0x88888888,
    ]);
    expect(STACK16_ADDR).toBeGreaterThan(SCRATCH_ADDR);
  });
  it("PUSH EAX at SP 2 stops at #SS with the state before the push", () => {
    const r = new Stack16Harness().run(toCase(CASES.find((d) => d.name.startsWith("PUSH EAX at SP 2"))!));
    expect(r.vector).toBe(12);
    expect(r.state.rip).toBe(BigInt(CODE_ADDR));
    expect(r.state.gpr[4]).toBe(2n);
  });
});

const unsupported = oracle16UnsupportedReason();
describe.skipIf(unsupported !== undefined)(
  `16-bit stack and code segments vs the host CPU${unsupported ? ` (skipped: ${unsupported})` : ""}`,
  () => {
    it("the CPU gives the known answer for PUSHAD on the 16-bit stack (the oracle's own check)", () => {
      const [r] = runOracle([toCase(CASES[0]!)]);
      expect(r!.vector).toBe(-1);
      expect(r!.state.rip).toBe(BigInt(CODE_ADDR + 1));
      expect(r!.state.gpr[4]! & 0xffffffffn).toBe(0x1234fff0n);
      const s = r!.state.scratch;
      const at = (i: number) => (s[i]! | (s[i + 1]! << 8) | (s[i + 2]! << 16) | (s[i + 3]! << 24)) >>> 0;
      expect([at(loEnd(0xc)), at(hiEnd(0xfffc))]).toEqual([0x11111111, 0x12340010]);
    });
    it(`agrees on ${CASES.length} directed stack cases`, () => {
      const cases = CASES.map(toCase);
      const expected = runOracle(cases);
      const harness = new Stack16Harness();
      const mismatches: string[] = [];
      cases.forEach((c, i) => {
        const diff = compare(harness.run(c), expected[i]!);
        if (diff.length) mismatches.push(`${CASES[i]!.name}: ${diff.join("; ")}`);
      });
      expect(mismatches).toEqual([]);
    });
  },
);
