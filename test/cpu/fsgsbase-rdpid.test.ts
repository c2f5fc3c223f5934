// FSGSBASE (RDFSBASE, RDGSBASE, WRFSBASE, WRGSBASE: CPUID.7.0:EBX[0], CR4.FSGSBASE) and RDPID
// (CPUID.7.0:ECX[22]) in the bare interpreter, as SDM Vol. 2 describes them: #UD unless enabled and
// (FSGSBASE) in 64-bit mode, #GP(0) for a non-canonical base, 32-bit forms zero-extending, RDPID
// reading IA32_TSC_AUX at any privilege whatever CR4.TSD.
import { describe, expect, it } from "vitest";
import { cpuidModel, Seg, StopReason } from "../../lib/cpu/index.js";
import { answerCpuid } from "../../lib/vmm/backends/soft/cpuid.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, r32, r64, SEL } from "./guest.js";

const PAE = 0x20;
const TSD = 0x4;
const FSGSBASE = 0x10000;
const TSC_AUX = 0xc0000103;
const UD = 6;
const GP = 13;

function guest(code: string, cr4 = FSGSBASE, mode: "long" | "prot32" | "real" = "long"): Guest {
  const g = makeGuest(mode, hex(code));
  if (mode === "long") g.cpu.setControl("cr4", BigInt(PAE | cr4));
  else g.cpu.setControl("cr4", BigInt(cr4));
  return g;
}

/** [vector, error code, RIP] of the exception frame ([#UD, RIP] for #UD), or [-1] */
function fault(g: Guest, wide = true): (number | bigint)[] {
  const v = loggedVector(g);
  if (v === -1) return [-1];
  const rsp = Number(g.cpu.getGpr(4));
  const at = (a: number) => (wide ? r64(g.ram, a) : BigInt(r32(g.ram, a)));
  return v === UD ? [v, at(rsp)] : [v, r32(g.ram, rsp), at(rsp + (wide ? 8 : 4))];
}

const le64 = (v: bigint) =>
  Array.from({ length: 8 }, (_, i) =>
    Number((v >> BigInt(8 * i)) & 0xffn)
      .toString(16)
      .padStart(2, "0"),
  ).join(" ");
/** mov rax, imm64 */
const movRax = (v: bigint) => `48 b8 ${le64(v)}`;

describe("CPUID offers FSGSBASE and RDPID", () => {
  it("CPUID.7.0:EBX[0] and ECX[22], in the model and as the soft backend answers", () => {
    for (const answer of [cpuidModel, answerCpuid]) {
      expect(answer(7, 0, 0)[1] & 1).toBe(1);
      expect(answer(7, 0, 0)[2] & (1 << 22)).not.toBe(0);
    }
  });

  it("MOV to CR4 sets FSGSBASE", () => {
    // mov rax, cr4; or eax, 0x10000; mov cr4, rax; hlt
    const g = guest("0f 20 e0 0d 00 00 01 00 0f 22 e0 f4", 0);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getControl("cr4")) & FSGSBASE).toBe(FSGSBASE);
  });
});

describe("RDFSBASE, RDGSBASE, WRFSBASE, WRGSBASE", () => {
  it("WRFSBASE moves FS's base (FS-relative accesses use it); RDFSBASE reads it back", () => {
    // mov rax, 0x400000; wrfsbase rax; mov eax, fs:[0x10]; rdfsbase rbx; hlt
    const g = guest(`${movRax(0x400000n)} f3 48 0f ae d0 64 8b 04 25 10 00 00 00 f3 48 0f ae c3 f4`);
    g.ram.set([0x78, 0x56, 0x34, 0x12], 0x400010);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x12345678n);
    expect(g.cpu.getGpr(3)).toBe(0x400000n);
    expect(g.cpu.getSegment(Seg.FS).base).toBe(0x400000n);
  });

  it("WRGSBASE/RDGSBASE take the upper half of the address space", () => {
    // mov rax, 0xffff8000_00001000; wrgsbase rax; rdgsbase rcx; hlt
    const g = guest(`${movRax(0xffff800000001000n)} f3 48 0f ae d8 f3 48 0f ae c9 f4`);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(1)).toBe(0xffff800000001000n);
    expect(g.cpu.getSegment(Seg.GS).base).toBe(0xffff800000001000n);
  });

  it("a non-canonical base is #GP(0) and leaves the base alone", () => {
    // mov rax, 0x0000_8000_0000_0000; wrgsbase rax; hlt
    const g = guest(`${movRax(0x800000000000n)} f3 48 0f ae d8 f4`);
    g.run();
    expect(fault(g)).toEqual([GP, 0, BigInt(CODE + 10)]);
    expect(g.cpu.getSegment(Seg.GS).base).toBe(0n);
  });

  it("32-bit operand forms: RDGSBASE zero-extends into the register, WRFSBASE takes EAX", () => {
    // mov rax, 0xffffffff_00001000; wrfsbase eax; mov rbx, -1 ; rdgsbase ebx; hlt
    const g = guest(`${movRax(0xffffffff00001000n)} f3 0f ae d0 48 c7 c3 ff ff ff ff f3 0f ae cb f4`);
    g.cpu.setSegment(Seg.GS, { ...g.cpu.getSegment(Seg.GS), base: 0xffffffff80001234n });
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getSegment(Seg.FS).base).toBe(0x1000n);
    expect(g.cpu.getGpr(3)).toBe(0x80001234n);
  });

  it("#UD without CR4.FSGSBASE", () => {
    const g = guest("f3 48 0f ae c0 f4", 0);
    g.run();
    expect(fault(g)).toEqual([UD, BigInt(CODE)]);
  });

  it("#UD outside 64-bit mode, CR4.FSGSBASE or not", () => {
    const g = guest("f3 0f ae c0 f4", FSGSBASE, "prot32");
    g.run();
    expect(fault(g, false)).toEqual([UD, BigInt(CODE)]);
  });
});

describe("RDPID", () => {
  it("64-bit mode: IA32_TSC_AUX zero-extended into the 64-bit register, also with REX.B", () => {
    // mov rax, -1; rdpid rax; mov r8, -1; rdpid r8; hlt
    const g = guest("48 c7 c0 ff ff ff ff f3 0f c7 f8 49 c7 c0 ff ff ff ff f3 41 0f c7 f8 f4");
    g.cpu.setMsr(TSC_AUX, 0x8000abcdn);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x8000abcdn);
    expect(g.cpu.getGpr(8)).toBe(0x8000abcdn);
  });

  it("protected and real mode: into the 32-bit register", () => {
    for (const mode of ["prot32", "real"] as const) {
      const g = guest("f3 0f c7 f9 f4", 0, mode);
      g.cpu.setMsr(TSC_AUX, 0x1234567n);
      expect(g.run()).toBe(StopReason.Halted);
      expect(loggedVector(g)).toBe(-1);
      expect(g.cpu.getGpr(1)).toBe(0x1234567n);
    }
  });

  it("CPL 3 with CR4.TSD: RDPID runs where RDTSCP is #GP(0)", () => {
    // rdpid rax; rdtscp
    const g = guest("f3 0f c7 f8 0f 01 f9", TSD);
    g.cpu.setSegment(1, { selector: SEL.ucode64, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
    g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x7000n);
    g.cpu.setMsr(TSC_AUX, 7n);
    g.run();
    expect(g.cpu.getGpr(0)).toBe(7n);
    expect(fault(g)).toEqual([GP, 0, BigInt(CODE + 4)]);
  });
});
