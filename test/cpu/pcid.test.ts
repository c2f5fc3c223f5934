// PCIDs (CR4.PCIDE, CPUID.1:ECX[17]) and INVPCID (CPUID.7.0:EBX[10]) in the bare interpreter, as
// the SDM describes them (Vol. 3A 4.10.1 "Process-Context Identifiers", 4.10.4.1; Vol. 2A INVPCID;
// Vol. 2B MOV to CR3/CR4): what may set CR4.PCIDE, what CR3 keeps of a load, the faults of INVPCID,
// and that no translation outlives what the SDM says invalidates it. The TLB keeps no PCID tags, so
// the tests assert what must be seen, never that a stale entry survives.
import { describe, expect, it } from "vitest";
import { cpuidModel, StopReason } from "../../lib/cpu/index.js";
import { answerCpuid } from "../../lib/vmm/backends/soft/cpuid.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, PML4, r32, r64, SEL } from "./guest.js";

const PCIDE = 0x20000;
const PAE = 0x20;
const PGE = 0x80;
const GP = 13;
const UD = 6;
/** the long-mode guest's page directory (2 MiB pages, identity): entry 2 maps 0x400000 */
const PD = PML4 + 0x2000;
/** an INVPCID descriptor */
const DESC = 0x5000;

function w32(ram: Uint8Array, a: number, v: number): void {
  new DataView(ram.buffer, ram.byteOffset).setUint32(a, v >>> 0, true);
}
function w64(ram: Uint8Array, a: number, v: bigint): void {
  new DataView(ram.buffer, ram.byteOffset).setBigUint64(a, v, true);
}

/** 64-bit guest at CPL 0 with CR4.PCIDE (or not) and CR3 = PML4 | pcid */
function guest(code: string, pcide = true, pcid = 0, cr4 = 0): Guest {
  const g = makeGuest("long", hex(code));
  g.cpu.setControl("cr3", BigInt(PML4 | pcid));
  g.cpu.setControl("cr4", BigInt(PAE | cr4 | (pcide ? PCIDE : 0)));
  g.ram.set([0x11, 0x11, 0x11, 0x11], 0x400000);
  g.ram.set([0x22, 0x22, 0x22, 0x22], 0x600000);
  return g;
}

/** [vector, error code, RIP] of the exception frame, or [-1] */
function fault(g: Guest): number[] {
  const v = loggedVector(g);
  if (v === -1) return [-1];
  const rsp = Number(g.cpu.getGpr(4));
  return v === UD ? [v, Number(r64(g.ram, rsp))] : [v, r32(g.ram, rsp), Number(r64(g.ram, rsp + 8))];
}

describe("CPUID and CR4 offer PCIDs and INVPCID", () => {
  it("CPUID.1:ECX[17] and CPUID.7.0:EBX[10], in the model and as the soft backend answers", () => {
    for (const answer of [cpuidModel, answerCpuid]) {
      expect(answer(1, 0, 0)[2] & (1 << 17)).not.toBe(0);
      expect(answer(7, 0, 0)[1] & (1 << 10)).not.toBe(0);
    }
  });

  // mov rax, cr4; or eax, 1 << 17; mov cr4, rax; hlt
  const setPcide = "0f 20 e0 0d 00 00 02 00 0f 22 e0 f4";

  it("MOV to CR4 sets PCIDE in IA-32e mode with CR3[11:0] = 0", () => {
    const g = guest(setPcide, false);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getControl("cr4")) & PCIDE).toBe(PCIDE);
  });

  it("MOV to CR4 setting PCIDE with CR3[11:0] != 0 is #GP(0)", () => {
    const g = guest(setPcide, false, 0x8);
    expect(g.run()).toBe(StopReason.Halted);
    expect(fault(g)).toEqual([GP, 0, CODE + 8]);
    expect(Number(g.cpu.getControl("cr4")) & PCIDE).toBe(0);
  });
});

describe("MOV to CR3 with CR4.PCIDE", () => {
  it("bits 11:0 are the PCID and stay; bit 63 (no flush) is taken but not stored", () => {
    // mov cr3, rbx; mov rax, cr3; hlt
    const g = guest("0f 22 db 0f 20 d8 f4");
    g.cpu.setGpr(3, (1n << 63n) | BigInt(PML4 | 0x7a5));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(BigInt(PML4 | 0x7a5));
    expect(g.cpu.getControl("cr3")).toBe(BigInt(PML4 | 0x7a5));
  });

  it("a switch to another PCID with the no-flush bit does not use the old address space's translations", () => {
    // mov eax, [0x400000]; mov cr3, rbx; mov ecx, [0x400000]; hlt
    const g = guest("8b 04 25 00 00 40 00 0f 22 db 8b 0c 25 00 00 40 00 f4", true, 1);
    // a second tree at 0x40000 where 0x400000 maps 0x600000
    const pml4b = 0x40000;
    w64(g.ram, pml4b, BigInt(pml4b + 0x1000) | 7n);
    w64(g.ram, pml4b + 0x1000, BigInt(pml4b + 0x2000) | 7n);
    for (let i = 0; i < 512; i++) w64(g.ram, pml4b + 0x2000 + 8 * i, BigInt(i << 21) | 0x87n);
    w64(g.ram, pml4b + 0x2000 + 16, 0x600087n);
    g.cpu.setGpr(3, (1n << 63n) | BigInt(pml4b | 2));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x11111111n);
    expect(g.cpu.getGpr(1)).toBe(0x22222222n);
  });
});

describe("INVPCID", () => {
  // mov ecx, type; invpcid rcx, [DESC]; hlt
  const invpcid = (type: number) =>
    `b9 ${[0, 8, 16, 24].map((s) => ((type >>> s) & 0xff).toString(16)).join(" ")} 66 0f 38 82 0c 25 00 50 00 00 f4`;
  const run = (code: string, desc: [number, number, bigint], pcide = true) => {
    const g = guest(code, pcide, pcide ? 3 : 0);
    w32(g.ram, DESC, desc[0]);
    w32(g.ram, DESC + 4, desc[1]);
    w64(g.ram, DESC + 8, desc[2]);
    g.run();
    return fault(g);
  };
  const AT = CODE + 5;

  it("types 0 to 3 run", () => {
    for (const type of [0, 1, 2, 3])
      expect(run(invpcid(type), [3, 0, 0x400000n]), `type ${type}`).toEqual([-1]);
  });

  it("a type above 3 (or with bits 63:32 set) is #GP(0)", () => {
    expect(run(invpcid(4), [0, 0, 0n])).toEqual([GP, 0, AT]);
    // mov rcx, 1 << 32; invpcid rcx, [DESC]; hlt
    expect(run("48 b9 00 00 00 00 01 00 00 00 66 0f 38 82 0c 25 00 50 00 00 f4", [0, 0, 0n])).toEqual([
      GP,
      0,
      CODE + 10,
    ]);
  });

  it("descriptor bits 63:12 set are #GP(0)", () => {
    expect(run(invpcid(1), [0x1000, 0, 0n])).toEqual([GP, 0, AT]);
    expect(run(invpcid(2), [0, 1, 0n])).toEqual([GP, 0, AT]);
  });

  it("type 0 with a non-canonical address is #GP(0)", () => {
    expect(run(invpcid(0), [0, 0, 0x0000_8000_0000_0000n])).toEqual([GP, 0, AT]);
    expect(run(invpcid(0), [0, 0, 0xffff_8000_0000_0000n])).toEqual([-1]);
  });

  it("without CR4.PCIDE, types 0 and 1 may name only PCID 0; types 2 and 3 ignore it", () => {
    expect(run(invpcid(0), [1, 0, 0n], false)).toEqual([GP, 0, AT]);
    expect(run(invpcid(1), [1, 0, 0n], false)).toEqual([GP, 0, AT]);
    expect(run(invpcid(0), [0, 0, 0n], false)).toEqual([-1]);
    expect(run(invpcid(2), [1, 0, 0n], false)).toEqual([-1]);
    expect(run(invpcid(3), [1, 0, 0n], false)).toEqual([-1]);
  });

  it("a register operand, LOCK, and CPL 3 fault (#UD, #UD, #GP(0))", () => {
    // invpcid with ModRM mod = 3
    expect(run("b9 02 00 00 00 66 0f 38 82 c1 f4", [0, 0, 0n])).toEqual([UD, AT]);
    expect(run("b9 02 00 00 00 f0 66 0f 38 82 0c 25 00 50 00 00 f4", [0, 0, 0n])).toEqual([UD, AT]);
    const g = guest(invpcid(2));
    g.cpu.setSegment(1, { selector: SEL.ucode64, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
    g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
    g.cpu.setGpr(4, 0x7000n);
    g.run();
    expect(fault(g)).toEqual([GP, 0, AT]);
  });

  it("a non-canonical memory operand is #GP(0)", () => {
    // mov rax, 0x0000800000000000; mov ecx, 2; invpcid rcx, [rax]; hlt
    expect(run("48 b8 00 00 00 00 00 80 00 00 b9 02 00 00 00 66 0f 38 82 08 f4", [0, 0, 0n])).toEqual([
      GP,
      0,
      CODE + 15,
    ]);
  });

  // mov eax, [0x400000]; mov dword [PD + 16], 0x600087 (0x400000 now maps 0x600000);
  // invpcid rcx, [DESC]; mov eax, [0x400000]; hlt
  const remap = (type: number, pte = 0x600087) =>
    `b9 0${type} 00 00 00 8b 04 25 00 00 40 00 c7 04 25 10 20 02 00 ${[0, 8, 16, 24]
      .map((s) => ((pte >>> s) & 0xff).toString(16))
      .join(" ")} 66 0f 38 82 0c 25 00 50 00 00 8b 04 25 00 00 40 00 f4`;

  it.each([0, 1, 2, 3])("type %i drops the translation of a remapped page", (type) => {
    const g = guest(remap(type), true, 3);
    w32(g.ram, DESC, 3);
    w64(g.ram, DESC + 8, 0x400000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x22222222n);
  });

  it("type 2 drops global translations too", () => {
    // both mappings global (G = bit 8), CR4.PGE on
    const g = guest(remap(2, 0x600187), true, 3, PGE);
    w64(g.ram, PD + 16, 0x400187n);
    w32(g.ram, DESC, 3);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x22222222n);
  });
});
