// Segment limit and type checks on the memory operand forms outside the general-purpose ALU/MOV
// paths (SSE, x87, FXSAVE/FXRSTOR, CMPXCHG8B, descriptor-table and MSW instructions, LAR/VERW,
// BOUND, moffs, XLAT, LDMXCSR/STMXCSR, BT with a register bit offset), CS-override writes, and
// the 64-bit canonical check with #SS(0) for SS-based operands.
//
// Each form runs twice against a segment whose limit ends exactly at the operand's last byte and
// one byte short of it: the first must complete, the second must fault with #GP(0) (#SS(0) for
// SS) at the instruction and change nothing (registers, x87/SSE state, memory, GDTR/IDTR, CR0).
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, r32, SEL } from "./guest.js";

const ES = 0;
const CS = 1;
const SS = 2;
/** the memory operand's offset in every case */
const AT = 0x40000;

interface Case {
  name: string;
  /** the instruction, with an ES override (26) that the SS variant replaces with 36 */
  code: string;
  bytes: number;
  /** needs CPL 0 (not run in the CPL-3 SS variant) */
  privileged?: boolean;
  setup?: (g: Guest) => void;
}

const CASES: Case[] = [
  { name: "MOVDQA load", code: "26 66 0f 6f 03", bytes: 16 },
  { name: "MOVDQA store", code: "26 66 0f 7f 03", bytes: 16 },
  { name: "MOVDQU store", code: "26 f3 0f 7f 03", bytes: 16 },
  { name: "MOVUPS load", code: "26 0f 10 0b", bytes: 16 },
  { name: "MOVSS load", code: "26 f3 0f 10 03", bytes: 4 },
  { name: "MOVSD store", code: "26 f2 0f 11 03", bytes: 8 },
  { name: "MOVQ store", code: "26 66 0f d6 03", bytes: 8 },
  { name: "MOVHPS store", code: "26 0f 17 03", bytes: 8 },
  { name: "CVTSI2SD load", code: "26 f2 0f 2a 03", bytes: 4 },
  { name: "FLD m32", code: "26 d9 03", bytes: 4 },
  { name: "FSTP m64", code: "26 dd 1b", bytes: 8 },
  { name: "FNSTCW", code: "26 d9 3b", bytes: 2 },
  { name: "FLDCW", code: "26 d9 2b", bytes: 2 },
  { name: "FILD m32", code: "26 db 03", bytes: 4 },
  { name: "FXSAVE", code: "26 0f ae 03", bytes: 512 },
  { name: "FXRSTOR", code: "26 0f ae 0b", bytes: 512, setup: (g) => g.ram.set([0x7f, 0x03], AT) },
  { name: "CMPXCHG8B", code: "26 0f c7 0b", bytes: 8 },
  { name: "SGDT", code: "26 0f 01 03", bytes: 6 },
  { name: "SIDT", code: "26 0f 01 0b", bytes: 6 },
  { name: "LGDT", code: "26 0f 01 13", bytes: 6, privileged: true },
  { name: "LIDT", code: "26 0f 01 1b", bytes: 6, privileged: true },
  { name: "SLDT m16", code: "26 0f 00 03", bytes: 2 },
  { name: "STR m16", code: "26 0f 00 0b", bytes: 2 },
  { name: "SMSW m16", code: "26 0f 01 23", bytes: 2 },
  { name: "LMSW m16", code: "26 0f 01 33", bytes: 2, privileged: true, setup: (g) => g.ram.set([0x11], AT) },
  { name: "LAR", code: "26 0f 02 03", bytes: 2 },
  { name: "LSL", code: "26 0f 03 03", bytes: 2 },
  { name: "VERR", code: "26 0f 00 23", bytes: 2 },
  { name: "VERW", code: "26 0f 00 2b", bytes: 2 },
  { name: "BOUND", code: "26 62 03", bytes: 8, setup: (g) => g.cpu.setGpr(0, 0n) },
  { name: "MOV EAX, moffs", code: `26 a1 ${le(AT)}`, bytes: 4 },
  { name: "MOV moffs, EAX", code: `26 a3 ${le(AT)}`, bytes: 4 },
  { name: "XLAT", code: "26 d7", bytes: 1, setup: (g) => g.cpu.setGpr(0, 0x11111100n) },
  { name: "LDMXCSR", code: "26 0f ae 13", bytes: 4, setup: (g) => g.ram.set([0x80, 0x1f], AT) },
  { name: "STMXCSR", code: "26 0f ae 1b", bytes: 4 },
];

function le(v: number): string {
  return [v, v >> 8, v >> 16, v >>> 24].map((b) => (b & 0xff).toString(16).padStart(2, "0")).join(" ");
}

/** 32-bit guest with recognisable register, x87 and SSE contents and zeroed operand memory */
function prepare(code: string, c: Case, user: boolean): Guest {
  const g = makeGuest("prot32", hex(`${code} f4`));
  g.cpu.setControl("cr4", 0x200n); // OSFXSR
  for (const [r, v] of [
    [0, 0x11111111n],
    [1, 0x22222222n],
    [2, 0x33333333n],
    [3, BigInt(AT)],
    [5, 0x55555555n],
    [6, 0x66666666n],
    [7, 0x77777777n],
  ] as const)
    g.cpu.setGpr(r, v);
  const x = g.cpu.getExtendedState();
  for (let i = 0; i < x.xmm.length; i++) x.xmm[i] = 0x01020304 * ((i % 7) + 1);
  x.fpu[0] = 1.5;
  g.cpu.setExtendedState({ ...x, fpuTag: 1 });
  if (user) {
    g.cpu.setSegment(CS, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
    g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x100n);
  }
  c.setup?.(g);
  return g;
}

interface Snapshot {
  gprs: bigint[];
  ext: string;
  mem: number[];
  gdtr: string;
  idtr: string;
  cr0: bigint;
}
function snapshot(g: Guest): Snapshot {
  const gprs: bigint[] = [];
  for (let r = 0; r < 8; r++) if (r !== 4) gprs.push(g.cpu.getGpr(r));
  const x = g.cpu.getExtendedState();
  return {
    gprs,
    ext: JSON.stringify({ ...x, fpu: [...x.fpu], xmm: [...x.xmm] }),
    mem: [...g.ram.subarray(AT - 16, AT + 0x220)],
    gdtr: JSON.stringify(g.cpu.getGdtr(), (_k, v) => (typeof v === "bigint" ? v.toString() : v)),
    idtr: JSON.stringify(g.cpu.getIdtr(), (_k, v) => (typeof v === "bigint" ? v.toString() : v)),
    cr0: g.cpu.getControl("cr0"),
  };
}
/** error code and faulting EIP from the handler's frame */
function frame(g: Guest): { err: number; eip: number } {
  const esp = Number(g.cpu.getGpr(4));
  return { err: r32(g.ram, esp), eip: r32(g.ram, esp + 4) };
}
function insnLength(code: string): number {
  return hex(code).length;
}

/** which segment is limited, at which CPL, and the fault expected one byte over the limit */
interface Variant {
  seg: number;
  selector: number;
  ar: number;
  /** CPL 3: the exception handler then runs on the ring-0 stack, not on the limited SS */
  user: boolean;
  vec: number;
  prefix: string;
}
const ES_CPL0: Variant = { seg: ES, selector: SEL.data32, ar: 0x4093, user: false, vec: 13, prefix: "26" };
const SS_CPL3: Variant = { seg: SS, selector: SEL.udata32, ar: 0x40f3, user: true, vec: 12, prefix: "36" };

function limitPair(c: Case, v: Variant): void {
  const code = c.code.replace(/^26/, v.prefix);
  const run = (limit: number) => {
    const g = prepare(code, c, v.user);
    g.cpu.setSegment(v.seg, { selector: v.selector, base: 0n, limit, ar: v.ar });
    const before = snapshot(g);
    expect(g.run(1000)).toBe(StopReason.Halted);
    return { g, before };
  };
  // the limit ends at the operand's last byte: the instruction completes and the HLT after it
  // runs (at CPL 3 that HLT is #GP(0))
  const { g: ok } = run(AT + c.bytes - 1);
  if (v.user) {
    expect(loggedVector(ok)).toBe(13);
    expect(frame(ok).eip).toBe(CODE + insnLength(code));
  } else {
    expect(loggedVector(ok)).toBe(-1);
    expect(Number(ok.cpu.getRip())).toBe(CODE + insnLength(code) + 1);
  }
  const { g: bad, before } = run(AT + c.bytes - 2);
  expect(loggedVector(bad)).toBe(v.vec);
  expect(frame(bad)).toEqual({ err: 0, eip: CODE });
  expect(snapshot(bad)).toEqual(before);
}

describe("memory operands outside the general-purpose paths: ES limit (CPL 0)", () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.bytes} bytes within the limit run, one byte over is #GP(0) with nothing changed`, () =>
      limitPair(c, ES_CPL0));
  }
});

describe("SS-based memory operands: SS limit (CPL 3)", () => {
  for (const c of CASES.filter((k) => k.privileged !== true)) {
    it(`${c.name}: within the limit it completes; one byte over is #SS(0) with nothing changed`, () =>
      limitPair(c, SS_CPL3));
  }
});

describe("segment types", () => {
  it("stores through a read-only data segment are #GP(0) for SSE, x87, FXSAVE, SGDT and moffs", () => {
    for (const c of CASES.filter((k) =>
      ["MOVDQU store", "FSTP m64", "FXSAVE", "SGDT", "MOV moffs, EAX"].includes(k.name),
    )) {
      const g = prepare(c.code, c, false);
      g.cpu.setSegment(ES, { selector: SEL.data32, base: 0n, limit: 0xffffffff, ar: 0xc091 });
      const before = snapshot(g);
      expect(g.run(1000), c.name).toBe(StopReason.Halted);
      expect(loggedVector(g), c.name).toBe(13);
      expect(frame(g), c.name).toEqual({ err: 0, eip: CODE });
      expect(snapshot(g), c.name).toEqual(before);
    }
  });
  it("a write through a CS override is #GP(0) even with a flat readable CS; a read works", () => {
    for (const code of ["2e 89 03", `2e a3 ${le(AT)}`, "2e 0f 11 03", "2e dd 1b"]) {
      const g = prepare(code, { name: code, code, bytes: 4 }, false);
      const before = snapshot(g);
      expect(g.run(1000), code).toBe(StopReason.Halted);
      expect(loggedVector(g), code).toBe(13);
      expect(frame(g), code).toEqual({ err: 0, eip: CODE });
      expect(snapshot(g), code).toEqual(before);
    }
    const r = prepare("2e 8b 0b", { name: "read", code: "", bytes: 4 }, false);
    r.ram.set([1, 2, 3, 4], AT);
    expect(r.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(r)).toBe(-1);
    expect(Number(r.cpu.getGpr(1))).toBe(0x04030201);
  });
  it("reads through an execute-only CS are #GP(0) for SSE, x87 and moffs; CLFLUSH is allowed", () => {
    for (const code of ["2e 66 0f 6f 03", "2e d9 03", `2e a1 ${le(AT)}`, "2e 0f ae 13"]) {
      const g = prepare(code, { name: code, code, bytes: 4 }, false);
      g.cpu.setSegment(CS, { selector: SEL.code32, base: 0n, limit: 0xffffffff, ar: 0xc099 });
      expect(g.run(1000), code).toBe(StopReason.Halted);
      expect(loggedVector(g), code).toBe(13);
      expect(frame(g), code).toEqual({ err: 0, eip: CODE });
    }
    // clflush cs:[ebx] ; hlt — and one beyond the limit is #GP(0)
    const ok = prepare("2e 0f ae 3b", { name: "clflush", code: "", bytes: 1 }, false);
    ok.cpu.setSegment(CS, { selector: SEL.code32, base: 0n, limit: 0xffffffff, ar: 0xc099 });
    expect(ok.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(ok)).toBe(-1);
    const over = prepare("26 0f ae 3b", { name: "clflush", code: "", bytes: 1 }, false);
    over.cpu.setSegment(ES, { selector: SEL.data32, base: 0n, limit: AT - 1, ar: 0x4093 });
    expect(over.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(over)).toBe(13);
  });
  it("a MOVDQA operand within the limit but not 16-byte aligned is #GP(0)", () => {
    const c = CASES[0];
    const g = prepare(c.code, c, false);
    g.cpu.setGpr(3, BigInt(AT + 8));
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame(g)).toEqual({ err: 0, eip: CODE });
  });
});

describe("BT/BTS with a register bit offset", () => {
  // bt es:[ebx], eax ; hlt — the dword at EBX + (EAX >> 5) * 4 is what the limit applies to
  for (const [code, name] of [
    ["26 0f a3 03", "BT"],
    ["26 0f ab 03", "BTS"],
  ] as const) {
    it(`${name}: the addressed dword, not the operand base, is checked against ES's limit`, () => {
      const c: Case = { name, code, bytes: 4 };
      const ok = prepare(code, c, false);
      ok.cpu.setSegment(ES, { selector: SEL.data32, base: 0n, limit: AT + 0xfff, ar: 0x4093 });
      ok.cpu.setGpr(0, BigInt(0x7fe0)); // dword at AT + 0xffc
      expect(ok.run(1000)).toBe(StopReason.Halted);
      expect(loggedVector(ok)).toBe(-1);

      const bad = prepare(code, c, false);
      bad.cpu.setSegment(ES, { selector: SEL.data32, base: 0n, limit: AT + 0xfff, ar: 0x4093 });
      bad.cpu.setGpr(0, BigInt(0x8000)); // dword at AT + 0x1000
      bad.ram.set([0, 0, 0, 0], AT + 0x1000);
      expect(bad.run(1000)).toBe(StopReason.Halted);
      expect(loggedVector(bad)).toBe(13);
      expect(frame(bad)).toEqual({ err: 0, eip: CODE });
      expect(r32(bad.ram, AT + 0x1000)).toBe(0);
    });
  }
});

describe("64-bit mode: only the canonical check, #SS(0) when SS-based", () => {
  const NONCANON = 0x0000800000000000n;
  /** error code and RIP from a 64-bit frame */
  function frame64(g: Guest): { err: number; rip: number } {
    const rsp = Number(g.cpu.getGpr(4));
    return { err: r32(g.ram, rsp), rip: r32(g.ram, rsp + 8) };
  }
  for (const [name, code, reg, vec] of [
    ["MOV rax, [rbp]", "48 8b 45 00", 5, 12],
    ["MOV rax, [rbx]", "48 8b 03", 3, 13],
    ["MOVDQA xmm0, [rbp]", "66 0f 6f 45 00", 5, 12],
    ["FXSAVE [rbp]", "0f ae 45 00", 5, 12],
    ["FLD m32 [rbp]", "d9 45 00", 5, 12],
    ["FISTP m64 [rbp]", "df 7d 00", 5, 12],
    ["CMPXCHG16B [rbp]", "48 0f c7 4d 00", 5, 12],
    ["SGDT [rbp]", "0f 01 45 00", 5, 12],
    ["LDMXCSR [rbp]", "0f ae 55 00", 5, 12],
    ["BT [rbp], rax", "48 0f a3 45 00", 5, 12],
    ["PUSH cs:[rbp] (override ignored: SS-based)", "2e ff 75 00", 5, 12],
  ] as const) {
    it(`${name}: a non-canonical address is ${vec === 12 ? "#SS(0)" : "#GP(0)"}; a canonical one works`, () => {
      const g = makeGuest("long", hex(`${code} f4`));
      g.cpu.setControl("cr4", 0x220n);
      g.cpu.setGpr(0, 0n);
      g.cpu.setGpr(reg, NONCANON);
      const rax = g.cpu.getGpr(0);
      expect(g.run(1000)).toBe(StopReason.Halted);
      expect(loggedVector(g)).toBe(vec);
      expect(frame64(g)).toEqual({ err: 0, rip: CODE });
      expect(g.cpu.getGpr(0)).toBe(rax);

      const ok = makeGuest("long", hex(`${code} f4`));
      ok.cpu.setControl("cr4", 0x220n);
      ok.cpu.setGpr(0, 0n);
      ok.cpu.setGpr(reg, BigInt(AT));
      expect(ok.run(1000)).toBe(StopReason.Halted);
      expect(loggedVector(ok)).toBe(-1);
    });
  }
  it("an access that starts canonical and ends past 2^47 is #SS(0) when RBP-based", () => {
    // movdqu xmm0, [rbp] ; hlt with RBP 8 bytes below the canonical boundary
    const g = makeGuest("long", hex("f3 0f 6f 45 00 f4"));
    g.cpu.setControl("cr4", 0x220n);
    g.cpu.setGpr(5, 0x7ffffffffff8n);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(12);
    expect(frame64(g)).toEqual({ err: 0, rip: CODE });
  });
  it("a non-canonical moffs address is #GP(0)", () => {
    // movabs eax, [0x800000000000] ; hlt
    const g = makeGuest("long", hex("a1 00 00 00 00 00 80 00 00 f4"));
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame64(g)).toEqual({ err: 0, rip: CODE });
  });
});
