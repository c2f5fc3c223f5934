// Test harness: builds a guest in RAM in a chosen mode (real, 32-bit protected, 64-bit long) with
// a GDT, an IDT whose handlers record the vector and error code, and identity paging, then runs
// hand-assembled code on the interpreter through bare hooks.

import {
  type BareHandlers,
  type BareHooks,
  createBareHooks,
  Interpreter,
  type StopReason,
} from "../../lib/cpu/index.js";

export type Mode = "real" | "prot32" | "long";

export const RAM_SIZE = 8 << 20;
export const CODE = 0x10000;
export const GDT = 0x1000;
export const IDT = 0x2000;
export const TSS = 0x3000;
export const PML4 = 0x20000;
export const STACK_TOP = 0x8f000;
/** handlers write [vector, error code] here (32-bit words), and HLT */
export const EXC_LOG = 0x9000;
const HANDLERS = 0x8000;

export const SEL = {
  code32: 0x08,
  data32: 0x10,
  code64: 0x18,
  code16: 0x20,
  data16: 0x28,
  ucode32: 0x33,
  udata32: 0x3b,
  ucode64: 0x43,
  tss: 0x48,
} as const;

export interface Guest {
  cpu: Interpreter;
  ram: Uint8Array;
  hooks: BareHooks;
  out: number[];
  /** runs until HLT/exit/shutdown; returns why */
  run(budget?: number): StopReason;
}

function w32(ram: Uint8Array, a: number, v: number): void {
  ram[a] = v;
  ram[a + 1] = v >> 8;
  ram[a + 2] = v >> 16;
  ram[a + 3] = v >> 24;
}
export function r32(ram: Uint8Array, a: number): number {
  return (ram[a] | (ram[a + 1] << 8) | (ram[a + 2] << 16) | (ram[a + 3] << 24)) >>> 0;
}
export function r64(ram: Uint8Array, a: number): bigint {
  return (BigInt(r32(ram, a + 4)) << 32n) | BigInt(r32(ram, a));
}

function desc(ram: Uint8Array, a: number, base: number, limit: number, access: number, flags: number): void {
  w32(ram, a, (limit & 0xffff) | ((base & 0xffff) << 16));
  w32(
    ram,
    a + 4,
    ((base >>> 16) & 0xff) | (access << 8) | (limit & 0xf0000) | (flags << 20) | (base & 0xff000000),
  );
}

/** VMX access rights from descriptor access byte + flags nibble */
function ar(access: number, flags: number): number {
  return access | (flags << 12);
}

export function makeGuest(mode: Mode, code: number[] | Uint8Array, handlers: BareHandlers = {}): Guest {
  const ram = new Uint8Array(RAM_SIZE);
  ram.set(code, CODE);
  const out: number[] = [];
  const hooks = createBareHooks(ram, {
    portOut: (port, _size, value) => {
      if (port === 0xe9) out.push(value & 0xff);
    },
    portIn: () => 0,
    ...handlers,
  });
  const cpu = new Interpreter();
  cpu.hooks = hooks;
  w32(ram, EXC_LOG, 0xffffffff);
  // identity map of the first 1 GiB with 2 MiB pages (used by long mode, and by guests that switch)
  const pdpt = PML4 + 0x1000;
  const pd = PML4 + 0x2000;
  w32(ram, PML4, pdpt | 7);
  w32(ram, pdpt, pd | 7);
  for (let i = 0; i < 512; i++) w32(ram, pd + 8 * i, (i << 21) | 0x87);
  // GDT
  desc(ram, GDT + 0x08, 0, 0xfffff, 0x9b, 0xc);
  desc(ram, GDT + 0x10, 0, 0xfffff, 0x93, 0xc);
  desc(ram, GDT + 0x18, 0, 0xfffff, 0x9b, 0xa);
  desc(ram, GDT + 0x20, 0, 0xffff, 0x9b, 0x0);
  desc(ram, GDT + 0x28, 0, 0xffff, 0x93, 0x0);
  desc(ram, GDT + 0x30, 0, 0xfffff, 0xfb, 0xc);
  desc(ram, GDT + 0x38, 0, 0xfffff, 0xf3, 0xc);
  desc(ram, GDT + 0x40, 0, 0xfffff, 0xfb, 0xa);
  desc(ram, GDT + 0x48, TSS, 0x67, 0x89, 0);
  cpu.setGdtr({ base: BigInt(GDT), limit: 0x5f });
  const seg = (s: number, selector: number, a: number, limit = 0xffffffff) =>
    cpu.setSegment(s, { selector, base: 0n, limit, ar: a });
  // exception handlers: vector i at HANDLERS + 16*i:
  //   mov dword [EXC_LOG], i ; (error code is on the stack for some) ; hlt
  for (let v = 0; v < 32; v++) {
    const h = HANDLERS + 16 * v;
    // C7 05 disp32 imm32 (in 64-bit mode this is RIP-relative, so use an absolute SIB form)
    // mov dword [abs EXC_LOG], v: C7 04 25 disp32 imm32 (valid in 32 and 64-bit)
    const bytes = [0xc7, 0x04, 0x25, ...le32(EXC_LOG), ...le32(v), 0xf4];
    ram.set(bytes, h);
  }
  if (mode === "real") {
    for (let v = 0; v < 32; v++) {
      // IVT: offset:segment; handler stub in real mode: mov dword [EXC_LOG], v ; hlt
      const h = HANDLERS + 0x400 + 16 * v;
      ram.set([0x66, 0xc7, 0x06, EXC_LOG & 0xff, EXC_LOG >> 8, v, 0, 0, 0, 0xf4], h);
      ram[v * 4] = h & 0xff;
      ram[v * 4 + 1] = (h >> 8) & 0xff;
      ram[v * 4 + 2] = 0;
      ram[v * 4 + 3] = 0;
    }
    cpu.setIdtr({ base: 0n, limit: 0x3ff });
    const rs = (s: number, a: number) => cpu.setSegment(s, { selector: 0, base: 0n, limit: 0xffff, ar: a });
    rs(1, 0x9b);
    for (const s of [0, 2, 3, 4, 5]) rs(s, 0x93);
    // code runs at CS = CODE >> 4, IP = 0
    cpu.setSegment(1, { selector: CODE >> 4, base: BigInt(CODE), limit: 0xffff, ar: 0x9b });
    cpu.setControl("cr0", 0x10n);
    cpu.setRip(0n);
    cpu.setGpr(4, 0x8000n);
    return finish();
  }
  // TSS: esp0/ss0 and rsp0 for ring transitions
  w32(ram, TSS + 4, STACK_TOP - 0x1000);
  w32(ram, TSS + 8, SEL.data32);
  if (mode === "prot32") {
    for (let v = 0; v < 32; v++) {
      const h = HANDLERS + 16 * v;
      desc(ram, IDT + 8 * v, 0, 0, 0, 0);
      w32(ram, IDT + 8 * v, (h & 0xffff) | (SEL.code32 << 16));
      w32(ram, IDT + 8 * v + 4, (h & 0xffff0000) | 0x8e00);
    }
    cpu.setIdtr({ base: BigInt(IDT), limit: 0xff });
    seg(1, SEL.code32, ar(0x9b, 0xc));
    for (const s of [0, 2, 3, 4, 5]) seg(s, SEL.data32, ar(0x93, 0xc));
    cpu.setSegment(7, { selector: SEL.tss, base: BigInt(TSS), limit: 0x67, ar: 0x8b });
    cpu.setControl("cr0", 0x11n);
    cpu.setRip(BigInt(CODE));
    cpu.setGpr(4, BigInt(STACK_TOP));
    return finish();
  }
  for (let v = 0; v < 32; v++) {
    const h = HANDLERS + 16 * v;
    w32(ram, IDT + 16 * v, (h & 0xffff) | (SEL.code64 << 16));
    w32(ram, IDT + 16 * v + 4, (h & 0xffff0000) | 0x8e00);
  }
  cpu.setIdtr({ base: BigInt(IDT), limit: 0x1ff });
  desc(ram, GDT + 0x48, TSS, 0x67, 0x89, 0);
  w32(ram, TSS + 4, STACK_TOP - 0x1000);
  w32(ram, TSS + 8, 0);
  seg(1, SEL.code64, ar(0x9b, 0xa));
  for (const s of [0, 2, 3, 4, 5]) seg(s, SEL.data32, ar(0x93, 0xc));
  cpu.setSegment(7, { selector: SEL.tss, base: BigInt(TSS), limit: 0x67, ar: 0x8b });
  cpu.setControl("cr3", BigInt(PML4));
  cpu.setControl("cr4", 0x20n);
  cpu.setControl("efer", 0x500n);
  cpu.setControl("cr0", 0x80000011n);
  cpu.setRip(BigInt(CODE));
  cpu.setGpr(4, BigInt(STACK_TOP));
  return finish();

  function finish(): Guest {
    return {
      cpu,
      ram,
      hooks,
      out,
      run: (budget = 1_000_000) => cpu.run(budget),
    };
  }
}

export function le32(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff];
}
export function le16(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff];
}

/** Assembles with binutils at dev time only: hex bytes pasted into tests come from here. */
export function hex(s: string): number[] {
  return s
    .trim()
    .split(/\s+/)
    .filter((x) => x.length > 0)
    .map((x) => Number.parseInt(x, 16));
}

/** vector recorded by the guest's exception handler stubs, or -1 */
export function loggedVector(g: Guest): number {
  return g.cpu.activity === 1 && r32(g.ram, EXC_LOG) !== 0xffffffff ? r32(g.ram, EXC_LOG) : -1;
}
