// The register file gdb sees for i386:x86-64: the order and sizes of target.xml (its regnums),
// and the `g`/`G` encodings. Values a target cannot provide travel as "xx" (unavailable), as the
// protocol allows; writes to them are ignored.

import { leHex, parseLeHex } from "./hex.js";

export type RegisterGroup = "core" | "fpu" | "sse" | "segments" | "sys";

export interface RegisterInfo {
  name: string;
  bits: number;
  type: string;
  group: RegisterGroup;
  /** the feature of target.xml the register belongs to */
  feature: string;
}

const CORE = "org.gnu.gdb.i386.core";
const SSE = "org.gnu.gdb.i386.sse";
const SEGMENTS = "org.gnu.gdb.i386.segments";
const SYS = "org.gnu.gdb.i386.sys";

function regs(names: string[], bits: number, type: string, group: RegisterGroup, feature: string) {
  return names.map((name) => ({ name, bits, type, group, feature }));
}

const GPRS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"];
const R8_15 = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/** gdb's amd64 numbering: the order gdb's own amd64 description uses, then our system registers. */
export const AMD64_REGISTERS: readonly RegisterInfo[] = [
  ...regs(GPRS.slice(0, 6), 64, "int64", "core", CORE),
  ...regs(["rbp", "rsp"], 64, "data_ptr", "core", CORE),
  ...regs(R8_15, 64, "int64", "core", CORE),
  { name: "rip", bits: 64, type: "code_ptr", group: "core", feature: CORE },
  { name: "eflags", bits: 32, type: "i386_eflags", group: "core", feature: CORE },
  ...regs(["cs", "ss", "ds", "es", "fs", "gs"], 32, "int32", "core", CORE),
  ...regs(["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"], 80, "i387_ext", "fpu", CORE),
  ...regs(["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"], 32, "int", "fpu", CORE),
  ...regs(
    Array.from({ length: 16 }, (_, i) => `xmm${i}`),
    128,
    "vec128",
    "sse",
    SSE,
  ),
  { name: "mxcsr", bits: 32, type: "i386_mxcsr", group: "sse", feature: SSE },
  ...regs(["fs_base", "gs_base", "k_gs_base"], 64, "int64", "segments", SEGMENTS),
  ...regs(["cr0", "cr2", "cr3", "cr4", "cr8", "efer"], 64, "int64", "sys", SYS),
];

export const REGISTER_INDEX = new Map(AMD64_REGISTERS.map((r, i) => [r.name, i]));

/** Register values by name; a missing name is unavailable. */
export type RegisterValues = Map<string, bigint>;

function encodeOne(info: RegisterInfo, value: bigint | undefined): string {
  return value === undefined ? "xx".repeat(info.bits / 8) : leHex(value, info.bits);
}

/** The `g` reply: every register in order. */
export function encodeRegisters(values: RegisterValues): string {
  return AMD64_REGISTERS.map((r) => encodeOne(r, values.get(r.name))).join("");
}

/** The `p` reply for register number `n`; undefined for a number we do not describe. */
export function encodeRegister(n: number, values: RegisterValues): string | undefined {
  const info = AMD64_REGISTERS[n];
  return info ? encodeOne(info, values.get(info.name)) : undefined;
}

/**
 * A `G` payload back to values. gdb may send fewer registers than described (older clients send
 * only the core); registers sent as "xx" are left out. Undefined when the text is malformed.
 */
export function decodeRegisters(text: string): RegisterValues | undefined {
  const out: RegisterValues = new Map();
  let at = 0;
  for (const r of AMD64_REGISTERS) {
    const n = r.bits / 4;
    if (at >= text.length) break;
    const chunk = text.slice(at, at + n);
    if (chunk.length !== n) return undefined;
    at += n;
    if (/^x+$/i.test(chunk)) continue;
    const v = parseLeHex(chunk);
    if (v === undefined) return undefined;
    out.set(r.name, v);
  }
  return at === text.length ? out : undefined;
}

/** A `P` value for register `n`; undefined when malformed or of the wrong size. */
export function decodeRegister(n: number, text: string): { name: string; value: bigint } | undefined {
  const info = AMD64_REGISTERS[n];
  if (!info || text.length !== info.bits / 4) return undefined;
  const value = parseLeHex(text);
  return value === undefined ? undefined : { name: info.name, value };
}
