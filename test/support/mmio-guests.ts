// Guests whose instructions touch MMIO in every form (issue 13, "MMIO that completes"), and a device
// that logs each access it sees (order, width, value). Every case states the exact log its
// instruction must leave: each access once, in program order, with the width KVM's emulator gives
// it (an 8-byte access one exit, a 16-byte one two 8-byte exits, a page-crossing access one piece
// per page, RAM parts straight in memory). Shared by the soft suite and the KVM suite.
//
// Layout (1 MiB of RAM, so everything from 0x100000 up is MMIO):
//   WIN  0x100000..0x103000   the logging device: memory-like, three pages
//   RAM  0x0FFFF0..0x100000   16 bytes of RAM right below it (page-crossing and REP partners)
// Real mode reaches both through DS = ES = SS = 0xFFFF (base 0xFFFF0) with 32-bit addressing.

import { expect } from "vitest";
import type { MmioExit } from "../../lib/types/exits.js";
import type { ExitHandler } from "../../lib/vmm/loop.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";

export type Mode = "real" | "protected" | "long";
export const MODES: readonly Mode[] = ["real", "protected", "long"];

export const WIN = 0x100000;
export const WIN_LEN = 0x3000;
export const RAM = 0xffff0;
const REAL_BASE = 0xffff0;
const CODE_AT: Record<Mode, number> = { real: 0x7c00, protected: 0x10000, long: 0x10000 };
export const APIC = 0xfee00000;

export interface Access {
  write: boolean;
  addr: number;
  size: number;
  /** the bytes read or written, as a little-endian number */
  value: bigint;
}

/** the device's bytes before the guest runs: every byte differs from its neighbours, high bits set */
export function initialWindow(): Uint8Array {
  const b = new Uint8Array(WIN_LEN);
  for (let i = 0; i < WIN_LEN; i++) b[i] = (i * 0x9d + 0x3b) & 0xff;
  return b;
}
/** the RAM partner's bytes before the guest runs */
export function initialRam(): Uint8Array {
  return Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
}

export function le(bytes: Uint8Array, at: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}
function putLe(bytes: Uint8Array, at: number, size: number, v: bigint): void {
  for (let i = 0; i < size; i++) bytes[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/**
 * What the guest's accesses do to a model of the window and the RAM partner, in order: the
 * expected log and the expected final bytes come from the same list.
 */
export class Model {
  readonly win = initialWindow();
  readonly ram = initialRam();
  readonly log: Access[] = [];
  /** a read of the window: logged, returns its value */
  r(addr: number, size: number): bigint {
    const v = le(this.win, addr - WIN, size);
    this.log.push({ write: false, addr, size, value: v });
    return v;
  }
  w(addr: number, size: number, value: bigint): void {
    const v = BigInt.asUintN(size * 8, value);
    putLe(this.win, addr - WIN, size, v);
    this.log.push({ write: true, addr, size, value: v });
  }
  ramRead(addr: number, size: number): bigint {
    return le(this.ram, addr - RAM, size);
  }
  ramWrite(addr: number, size: number, value: bigint): void {
    putLe(this.ram, addr - RAM, size, BigInt.asUintN(size * 8, value));
  }
}

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** Machine code for one mode, with the prefixes that mode needs for 32-bit operands and addresses. */
export class Code {
  readonly bytes: number[] = [];
  readonly labels = new Map<string, number>();
  readonly #fixups: { at: number; label: string }[] = [];
  constructor(readonly mode: Mode) {}
  get real(): boolean {
    return this.mode === "real";
  }
  get long(): boolean {
    return this.mode === "long";
  }
  /** operand-size prefix for a 32-bit operand */
  get o32(): number[] {
    return this.real ? [0x66] : [];
  }
  /** operand-size prefix for a 16-bit operand */
  get o16(): number[] {
    return this.real ? [] : [0x66];
  }
  /** the offset that reaches linear address `lin` through the data segments */
  off(lin: number): number {
    return this.real && lin >= REAL_BASE ? lin - REAL_BASE : lin;
  }
  raw(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  label(name: string): this {
    this.labels.set(name, this.bytes.length);
    return this;
  }
  /** jcc rel8 (cc 0-15) or jmp rel8 (cc -1) to a label */
  jShort(cc: number, label: string): this {
    this.raw(cc < 0 ? 0xeb : 0x70 + cc, 0);
    this.#fixups.push({ at: this.bytes.length - 1, label });
    return this;
  }
  /** mov r32, imm32 (zero-extends in 64-bit mode) */
  mov(reg: number, value: number): this {
    return this.raw(...this.o32, 0xb8 + reg, ...le32(value));
  }
  /** mov r32, imm32 with imm32 the offset of a linear address */
  movAddr(reg: number, lin: number): this {
    return this.mov(reg, this.off(lin));
  }
  /**
   * An instruction with the memory operand [base + disp] (32-bit addressing in every mode):
   * `prefix` are its legacy prefixes and REX (REX last), then opcode, ModRM, displacement, `imm`.
   */
  mem(prefix: number[], opcode: number[], reg: number, base: number, disp = 0, imm: number[] = []): this {
    const modrm = (disp === 0 ? 0 : 0x80) | ((reg & 7) << 3) | base;
    return this.raw(
      ...(this.real ? [0x67] : []),
      ...prefix,
      ...opcode,
      modrm,
      ...(disp === 0 ? [] : le32(disp)),
      ...imm,
    );
  }
  /** an absolute memory operand [disp32] (SIB form in 64-bit mode, where mod 0 rm 5 is RIP-relative) */
  abs(prefix: number[], opcode: number[], reg: number, lin: number, imm: number[] = []): this {
    const modrm = (this.long ? 4 : 5) | ((reg & 7) << 3);
    return this.raw(
      ...(this.real ? [0x67] : []),
      ...prefix,
      ...opcode,
      modrm,
      ...(this.long ? [0x25] : []),
      ...le32(this.off(lin)),
      ...imm,
    );
  }
  /** a string instruction with 32-bit addressing (ESI/EDI/ECX in real mode too) */
  str(...b: number[]): this {
    return this.raw(...(this.real ? [0x67] : []), ...b);
  }
  link(): Uint8Array {
    for (const f of this.#fixups) {
      const to = this.labels.get(f.label);
      if (to === undefined) throw new Error(`no label ${f.label}`);
      const rel = to - (f.at + 1);
      if (rel < -128 || rel > 127) throw new Error(`label ${f.label} out of rel8 reach`);
      this.bytes[f.at] = rel & 0xff;
    }
    return Uint8Array.from(this.bytes);
  }
}

export const EAX = 0;
export const ECX = 1;
export const EDX = 2;
export const EBX = 3;
export const ESP = 4;
export const ESI = 6;
export const EDI = 7;

/** The start every guest shares: data segments that reach WIN in real mode, SSE enabled. */
function prologue(c: Code): void {
  if (c.real) {
    // mov ax, 0xffff; mov ds, ax; mov es, ax (the stack cases load SS themselves)
    c.raw(0xb8, 0xff, 0xff, 0x8e, 0xd8, 0x8e, 0xc0);
  }
  // mov eax, cr4; or eax, 0x200 (OSFXSR); mov cr4, eax; xor eax, eax (CR0 keeps EM and TS clear)
  c.raw(0x0f, 0x20, 0xe0, ...c.o32, 0x0d, ...le32(0x200), 0x0f, 0x22, 0xe0, ...c.o32, 0x31, 0xc0);
}

export interface GuestCase {
  name: string;
  modes: readonly Mode[];
  /** why KVM cannot run this form (its instruction emulator lacks it): the KVM suite skips it */
  notOnKvm?: string;
  /** the instructions under test (the prologue and `cli; hlt` come around them) */
  code(c: Code): void;
  /** the accesses they make and what they leave in the model; returns the registers they must leave */
  expect(m: Model, mode: Mode): Partial<Record<"rax" | "rcx" | "rdx" | "rsi" | "rdi" | "rsp", bigint>>;
}

export interface CaseRun {
  log: Access[];
  /** MMIO exits the loop saw for the window, as accesses */
  exits: Access[];
  win: Uint8Array;
  ram: Uint8Array;
  regs: Record<"rax" | "rcx" | "rdx" | "rsi" | "rdi" | "rsp", bigint>;
  reason: string;
  message: string | undefined;
}

/** Attaches the logging device to the window of a machine: memory-like, every access logged. */
export function attachLogger(vm: Machine): { log: Access[]; win: Uint8Array; exits: Access[] } {
  const win = initialWindow();
  const log: Access[] = [];
  const exits: Access[] = [];
  const inWindow = (e: MmioExit) => e.address >= WIN && e.address + e.length <= WIN + WIN_LEN;
  // the exit handler fills the exit's bytes itself: all 64 bits of an 8-byte value pass exactly
  const prev: ExitHandler<MmioExit> | undefined = vm.setExitHandler("mmio", (exit, ctx) => {
    if (!inWindow(exit)) return prev?.(exit, ctx);
    const at = exit.address - WIN;
    if (exit.write) win.set(exit.data.subarray(0, exit.length), at);
    else exit.data.set(win.subarray(at, at + exit.length));
    log.push({
      write: exit.write,
      addr: exit.address,
      size: exit.length,
      value: le(exit.data, 0, exit.length),
    });
    return undefined;
  });
  vm.on("exit", (e) => {
    if (e.kind === "mmio" && inWindow(e))
      exits.push({ write: e.write, addr: e.address, size: e.length, value: 0n });
  });
  return { log, win, exits };
}

export async function runCase(
  backend: "soft" | "kvm",
  mode: Mode,
  body: (c: Code) => void,
): Promise<CaseRun> {
  const vm = await createMachine({ backend, memoryMiB: 1 });
  try {
    const dev = attachLogger(vm);
    const c = new Code(mode);
    prologue(c);
    body(c);
    c.raw(0xfa, 0xf4); // cli; hlt
    vm.memory.write(RAM, initialRam());
    vm.loadFlat(c.link(), { address: CODE_AT[mode], mode });
    const result = await vm.run({ timeoutMs: 30_000, maxExits: 20_000 });
    const r = vm.vcpu(0).getRegs();
    return {
      log: dev.log,
      exits: dev.exits,
      win: dev.win,
      ram: vm.memory.read(RAM, 16),
      regs: { rax: r.rax, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, rsp: r.rsp },
      reason: result.reason,
      message: result.message,
    };
  } finally {
    vm.close();
  }
}

const hex = (v: bigint) => `0x${v.toString(16)}`;
const show = (log: readonly Access[], values = true) =>
  log.map(
    (a) => `${a.write ? "W" : "R"} ${a.addr.toString(16)}/${a.size}${values ? ` ${hex(a.value)}` : ""}`,
  );

/** what every case asserts: the exact log, one exit per access, the final registers and bytes */
export function expectRun(run: CaseRun, model: Model, regs: Partial<CaseRun["regs"]>): void {
  expect(run.reason, run.message).toBe("hlt");
  expect(show(run.log)).toEqual(show(model.log));
  // the loop saw each access as exactly one "mmio" exit
  expect(show(run.exits, false)).toEqual(show(model.log, false));
  for (const [name, value] of Object.entries(regs)) {
    expect(hex(run.regs[name as keyof CaseRun["regs"]]), name).toBe(hex(value!));
  }
  expect(Buffer.from(run.ram).toString("hex"), "RAM below the window").toBe(
    Buffer.from(model.ram).toString("hex"),
  );
  expect(Buffer.from(run.win).equals(Buffer.from(model.win)), "device bytes").toBe(true);
}
