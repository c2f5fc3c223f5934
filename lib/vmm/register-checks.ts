// What setRegs/setSregs/setMsr of a vCPU accept: values an x86 CPU can hold, checked on both
// backends before anything is written, so a bad value is a RegisterValueError naming the field
// instead of a half-written vCPU or a VM entry that fails later. The rules are architectural
// (SDM Vol. 3A 2.3 EFLAGS, 2.5 control registers, 3.4 segment registers) and loose where CPUs
// differ (CR4 and EFER bits either vendor defines pass): what getRegs/getSregs return on any
// host must be accepted back unchanged. Each backend still refuses what its CPU lacks (KVM with
// EINVAL, the soft backend with a failed VM entry naming the rule).

import { GPR_NAMES, type Regs, type Segment, type SpecialRegs } from "../types/regs.js";
import { hex, RegisterValueError } from "./errors.js";

const TWO64 = 1n << 64n;
const REG_NAMES: readonly (keyof Regs)[] = [...GPR_NAMES, "rip", "rflags"];
const SEG_NAMES = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;
const SREG_NAMES: readonly (keyof SpecialRegs)[] = [
  ...SEG_NAMES,
  "gdt",
  "idt",
  "cr0",
  "cr2",
  "cr3",
  "cr4",
  "cr8",
  "efer",
  "apicBase",
];

/** RFLAGS bits that exist: CF, 1, PF, AF, ZF, SF, TF, IF, DF, OF, IOPL, NT, RF, VM, AC, VIF, VIP, ID */
const RFLAGS_DEFINED = 0x3f7fd7n;
const RFLAGS_VM = 0x20000n;
/** CR0: PE MP EM TS ET NE WP AM NW CD PG; the rest reads as 0 */
const CR0_DEFINED = 0xe005003fn;
/** CR4 bits no vendor defines: 15 and 63:32 */
const CR4_RESERVED = 0xffffffff00008000n;
/** EFER bits either vendor defines: SCE, LME, LMA, NXE, SVME, LMSLE, FFXSR, TCE, MCOMMIT, INTWB, UAIW, AUTOIBRS */
const EFER_DEFINED = 0x36fd01n;
/** physical addresses have at most 52 bits */
const PHYS_RESERVED = ~((1n << 52n) - 1n) & (TWO64 - 1n);

const fail = (register: string, value: unknown, why: string): never => {
  throw new RegisterValueError(`${register} = ${show(value)}: ${why}`, register, value);
};

function show(v: unknown): string {
  if (typeof v === "bigint") return v < 0n ? `-${hex(-v)}` : hex(v);
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  return typeof v;
}

/** a 64-bit register value: a bigint in [-2^63, 2^64), as unsigned */
function u64(register: string, v: unknown): bigint {
  if (typeof v !== "bigint") return fail(register, v, `must be a bigint, got ${typeof v}`);
  if (v < -(1n << 63n) || v >= TWO64) return fail(register, v, "does not fit in 64 bits");
  return BigInt.asUintN(64, v);
}

function int(register: string, v: unknown, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    return fail(register, v, `must be an integer from 0 to ${hex(max)}`);
  }
  return v;
}

function bool(register: string, v: unknown): boolean {
  if (typeof v !== "boolean") return fail(register, v, "must be a boolean");
  return v;
}

const canonical = (v: bigint): boolean => {
  const top = v >> 47n;
  return top === 0n || top === 0x1ffffn;
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** the keys of `given` must all be `known` (a misspelt register is an error, not ignored) */
function knownKeys(what: string, given: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(given)) {
    if (!known.includes(k)) fail(k, given[k], `is not a register ${what} knows (${known.join(", ")})`);
  }
}

/** 64-bit mode: IA-32e mode active and a 64-bit code segment */
const mode64 = (s: SpecialRegs): boolean => (s.efer & 0x400n) !== 0n && s.cs.l;

/**
 * The registers setRegs writes: `given` over `current` (fields left out keep their values, so
 * `{}` writes nothing new), checked against the vCPU's mode in `sregs`. RFLAGS bit 1 is set.
 */
export function checkRegs(given: unknown, current: Regs, sregs: SpecialRegs): Regs {
  if (!isObject(given)) return fail("regs", given, "must be an object of registers");
  knownKeys("setRegs", given, REG_NAMES);
  const out = { ...current };
  for (const name of REG_NAMES) {
    if (given[name] !== undefined) out[name] = u64(name, given[name]);
  }
  const flags = out.rflags | 2n;
  if ((flags & ~RFLAGS_DEFINED) !== 0n) {
    fail("rflags", given.rflags ?? out.rflags, `reserved bits set (${hex(flags & ~RFLAGS_DEFINED)})`);
  }
  if ((flags & RFLAGS_VM) !== 0n && ((sregs.cr0 & 1n) === 0n || (sregs.efer & 0x400n) !== 0n)) {
    fail("rflags", flags, "VM (virtual-8086 mode) needs CR0.PE = 1 outside IA-32e mode");
  }
  out.rflags = flags;
  if (mode64(sregs)) {
    if (!canonical(out.rip)) fail("rip", out.rip, "not canonical in 64-bit mode");
  } else if (out.rip >> 32n !== 0n) {
    fail("rip", out.rip, "bits 63:32 set outside 64-bit mode");
  }
  return out;
}

function checkSegment(name: string, given: unknown, current: Segment): Segment {
  if (!isObject(given)) return fail(name, given, "must be a segment object");
  knownKeys(`a segment (${name})`, given, Object.keys(current));
  const s: Segment = { ...current, ...(given as Partial<Segment>) };
  const base = u64(`${name}.base`, s.base);
  // FS/GS, TR and LDTR bases are linear addresses a CPU keeps canonical; the others have 32 bits
  const wide = name === "fs" || name === "gs" || name === "tr" || name === "ldt";
  if (wide ? !canonical(base) : base >> 32n !== 0n) {
    fail(`${name}.base`, s.base, wide ? "not canonical" : "bits 63:32 set");
  }
  return {
    base,
    limit: int(`${name}.limit`, s.limit, 0xffffffff),
    selector: int(`${name}.selector`, s.selector, 0xffff),
    type: int(`${name}.type`, s.type, 15),
    dpl: int(`${name}.dpl`, s.dpl, 3),
    present: bool(`${name}.present`, s.present),
    db: bool(`${name}.db`, s.db),
    s: bool(`${name}.s`, s.s),
    l: bool(`${name}.l`, s.l),
    g: bool(`${name}.g`, s.g),
    avl: bool(`${name}.avl`, s.avl),
    unusable: bool(`${name}.unusable`, s.unusable),
  };
}

function checkTable(name: string, given: unknown, current: { base: bigint; limit: number }) {
  if (!isObject(given)) return fail(name, given, "must be { base, limit }");
  knownKeys(`a descriptor table (${name})`, given, ["base", "limit"]);
  const t = { ...current, ...(given as Partial<typeof current>) };
  const base = u64(`${name}.base`, t.base);
  if (!canonical(base)) fail(`${name}.base`, t.base, "not canonical");
  return { base, limit: int(`${name}.limit`, t.limit, 0xffff) };
}

/**
 * The special registers setSregs writes: `given` over `current` (segments and tables merged field
 * by field), each value checked and the control registers checked together.
 */
export function checkSregs(given: unknown, current: SpecialRegs): SpecialRegs {
  if (!isObject(given)) return fail("sregs", given, "must be an object of special registers");
  knownKeys("setSregs", given, SREG_NAMES);
  const out = { ...current };
  for (const name of SEG_NAMES) {
    if (given[name] !== undefined) out[name] = checkSegment(name, given[name], current[name]);
  }
  for (const name of ["gdt", "idt"] as const) {
    if (given[name] !== undefined) out[name] = checkTable(name, given[name], current[name]);
  }
  for (const name of ["cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apicBase"] as const) {
    if (given[name] !== undefined) out[name] = u64(name, given[name]);
  }
  const { cr0, cr3, cr4, cr8, efer, apicBase } = out;
  if ((cr0 & ~CR0_DEFINED) !== 0n) fail("cr0", cr0, `reserved bits set (${hex(cr0 & ~CR0_DEFINED)})`);
  if ((cr0 & 0x80000000n) !== 0n && (cr0 & 1n) === 0n) fail("cr0", cr0, "PG without PE");
  if ((cr0 & 0x20000000n) !== 0n && (cr0 & 0x40000000n) === 0n) fail("cr0", cr0, "NW without CD");
  if ((cr3 & PHYS_RESERVED) !== 0n) fail("cr3", cr3, "bits above the 52-bit physical address set");
  if ((cr4 & CR4_RESERVED) !== 0n) fail("cr4", cr4, `reserved bits set (${hex(cr4 & CR4_RESERVED)})`);
  if (cr8 > 15n) fail("cr8", cr8, "CR8 holds 4 bits (the task priority class)");
  if ((efer & ~EFER_DEFINED) !== 0n) fail("efer", efer, `reserved bits set (${hex(efer & ~EFER_DEFINED)})`);
  // bits 7:0 and 9 are reserved; 8 BSP, 10 x2APIC enable, 11 global enable
  if ((apicBase & (0x2ffn | PHYS_RESERVED)) !== 0n) fail("apicBase", apicBase, "reserved bits set");
  const lma = (efer & 0x400n) !== 0n;
  const paging = (cr0 & 0x80000000n) !== 0n;
  if (lma && (!paging || (efer & 0x100n) === 0n || (cr4 & 0x20n) === 0n)) {
    fail("efer", efer, "LMA (IA-32e mode) needs LME, CR0.PG and CR4.PAE");
  }
  if (!lma && paging && (efer & 0x100n) !== 0n) fail("efer", efer, "LME with CR0.PG makes LMA 1");
  if (!lma && (cr4 & 0x20000n) !== 0n) fail("cr4", cr4, "PCIDE outside IA-32e mode");
  if (lma && out.cs.l && out.cs.db) fail("cs", out.cs, "L and D/B both set");
  return out;
}

/** setMsr's arguments: an MSR index (32 bits) and a 64-bit value */
export function checkMsr(index: unknown, value: unknown): { index: number; value: bigint } {
  const i = int("msr", index, 0xffffffff);
  return { index: i, value: u64(`msr ${hex(i)}`, value) };
}
