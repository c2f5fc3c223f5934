// The VM-exit instruction-information field, the displacement in the exit qualification, and the
// guest-linear address of INS/OUTS (SDM 28.2.5), decoded from the instruction the guest ran.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import {
  CodeSize,
  decodeOperand,
  F,
  memoryInfo,
  operandInfo,
  Proc,
  Proc2,
  VMX_BASIC,
} from "../../lib/vmx/index.js";
import { type RigOptions, rigWith } from "./setup.js";

const RAM = 1 << 20;

function guest(code: number[], opts: RigOptions = {}, mode: "real" | "protected" = "real") {
  const r = rigWith(new Interpreter(), { realMode: true, ...opts });
  const ram = r.mem.allocate(RAM);
  r.ept.map(0, ram.hpa, RAM);
  // a HLT after the code, and at 0:0 where the zeroed IVT sends any exception: nothing runs away
  ram.bytes.set([...code, 0xf4], 0x1000);
  ram.bytes[0] = 0xf4;
  r.lp.vmwrite(F.GUEST_RIP, 0x1000);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  if (mode === "protected") {
    // flat 32-bit segments, paging off (unrestricted guest allows PE=1 with PG=0)
    r.lp.vmwrite(F.GUEST_CR0, 0x31n);
    r.lp.vmwrite(F.GUEST_CS_SELECTOR, 8);
    r.lp.vmwrite(F.GUEST_CS_LIMIT, 0xffffffff);
    r.lp.vmwrite(F.GUEST_CS_AR_BYTES, 0xc09b);
    for (const [sel, limit, ar] of [
      [F.GUEST_DS_SELECTOR, F.GUEST_DS_LIMIT, F.GUEST_DS_AR_BYTES],
      [F.GUEST_ES_SELECTOR, F.GUEST_ES_LIMIT, F.GUEST_ES_AR_BYTES],
      [F.GUEST_SS_SELECTOR, F.GUEST_SS_LIMIT, F.GUEST_SS_AR_BYTES],
      [F.GUEST_FS_SELECTOR, F.GUEST_FS_LIMIT, F.GUEST_FS_AR_BYTES],
      [F.GUEST_GS_SELECTOR, F.GUEST_GS_LIMIT, F.GUEST_GS_AR_BYTES],
    ] as const) {
      r.lp.vmwrite(sel, 0x10);
      r.lp.vmwrite(limit, 0xffffffff);
      r.lp.vmwrite(ar, 0xc093);
    }
  }
  return { ...r, ram: ram.bytes };
}

const IO = { proc: Proc.HLT | Proc.UNCOND_IO };
const DT = { proc2: Proc2.DESC_TABLE };
const INDEX_INVALID = 1 << 22;
const BASE_INVALID = 1 << 27;

describe("decoding the exiting instruction", () => {
  it("segment override, address-size prefix and REX in 64-bit code", () => {
    const outs = decodeOperand(Uint8Array.of(0x65, 0xf3, 0x6e), CodeSize.Bits64, false)!;
    expect([outs.segment, outs.addressSize]).toEqual([5, 2]);
    const outs32 = decodeOperand(Uint8Array.of(0x67, 0x6e), CodeSize.Bits64, false)!;
    expect([outs32.segment, outs32.addressSize]).toEqual([3, 1]);
    const outs16 = decodeOperand(Uint8Array.of(0x67, 0x6e), CodeSize.Bits32, false)!;
    expect(outs16.addressSize).toBe(0);
  });

  it("16-bit ModR/M: direct address and [bp+si+disp8] (SS by default)", () => {
    const direct = decodeOperand(Uint8Array.of(0x0f, 0x01, 0x16, 0x34, 0x12), CodeSize.Bits16, true)!;
    expect(memoryInfo(direct)).toBe((3 << 15) | INDEX_INVALID | BASE_INVALID);
    expect(direct.displacement).toBe(0x1234);
    const bpsi = decodeOperand(Uint8Array.of(0x0f, 0x01, 0x52, 0xf0), CodeSize.Bits16, true)!;
    expect(memoryInfo(bpsi)).toBe((2 << 15) | (6 << 18) | (5 << 23));
    expect(bpsi.displacement).toBe(-16);
  });

  it("32-bit SIB with scaling and a negative displacement", () => {
    // lgdt [ebx+ecx*4-8]
    const d = decodeOperand(Uint8Array.of(0x0f, 0x01, 0x54, 0x8b, 0xf8), CodeSize.Bits32, true)!;
    expect(memoryInfo(d)).toBe(2 | (1 << 7) | (3 << 15) | (1 << 18) | (3 << 23));
    expect(d.displacement).toBe(-8);
  });

  it("64-bit: REX-extended registers, register operands and RIP-relative addressing", () => {
    // vmread rax, r9 (REX.R): register operand in 6:3 with bit 10, reg2 = 9
    const vmread = decodeOperand(Uint8Array.of(0x44, 0x0f, 0x78, 0xc8), CodeSize.Bits64, true)!;
    expect((operandInfo(vmread) | ((vmread.reg ?? 0) << 28)) >>> 0).toBe(
      ((9 << 28) | (2 << 7) | (1 << 10)) >>> 0,
    );
    // vmptrld [rip+0x10]: neither base nor index
    const rip = decodeOperand(Uint8Array.of(0x0f, 0xc7, 0x35, 0x10, 0, 0, 0), CodeSize.Bits64, true)!;
    expect(memoryInfo(rip)).toBe((2 << 7) | (3 << 15) | INDEX_INVALID | BASE_INVALID);
    expect(rip.displacement).toBe(0x10);
    // [r12+r13*8] via REX.B and REX.X; base r12 is not rSP, so DS
    const ext = decodeOperand(Uint8Array.of(0x43, 0x0f, 0xc7, 0x34, 0xec), CodeSize.Bits64, true)!;
    expect(memoryInfo(ext)).toBe(3 | (2 << 7) | (3 << 15) | (13 << 18) | (12 << 23));
    // rdrand rax with REX.W: destination 0, 64-bit operand
    const rdrand = decodeOperand(Uint8Array.of(0x48, 0x0f, 0xc7, 0xf0), CodeSize.Bits64, true)!;
    expect([rdrand.rm, rdrand.operandSize]).toEqual([0, 2]);
  });

  it("bytes that end inside the operand give no decoding", () => {
    expect(decodeOperand(Uint8Array.of(0x0f, 0x01, 0x16, 0x34), CodeSize.Bits16, true)).toBeUndefined();
  });
});

describe("instruction information at VM exit", () => {
  it("IA32_VMX_BASIC[54] is set: INS/OUTS report segment and address size", () => {
    expect((VMX_BASIC >> 54n) & 1n).toBe(1n);
  });

  it("OUTSB with an FS override in real mode: segment FS, 16-bit addresses, linear FS.base + SI", () => {
    // mov si, 0x1234; mov cx, 1; rep fs outsb
    const g = guest([0xbe, 0x34, 0x12, 0xb9, 0x01, 0x00, 0xf3, 0x64, 0x6e, 0xf4], IO);
    g.lp.vmwrite(F.GUEST_FS_SELECTOR, 0x1000);
    g.lp.vmwrite(F.GUEST_FS_BASE, 0x10000);
    expect(g.lp.vmlaunch()).toBe(30);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt(4 << 15));
    expect(g.lp.vmread(F.GUEST_LINEAR_ADDRESS)).toBe(0x11234n);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(3n);
  });

  it("INSB uses ES:DI whatever the override", () => {
    // mov di, 0x20; ds insb
    const g = guest([0xbf, 0x20, 0x00, 0x3e, 0x6c], IO);
    g.lp.vmwrite(F.GUEST_ES_SELECTOR, 0x2000);
    g.lp.vmwrite(F.GUEST_ES_BASE, 0x20000);
    expect(g.lp.vmlaunch()).toBe(30);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(0n);
    expect(g.lp.vmread(F.GUEST_LINEAR_ADDRESS)).toBe(0x20020n);
  });

  it("32-bit code: OUTSD reports 32-bit addresses; an address-size prefix truncates ESI to 16 bits", () => {
    // mov esi, 0x12345678; outsd; (then) a32->a16 outsb
    const code = [0xbe, 0x78, 0x56, 0x34, 0x12, 0x6f, 0x67, 0x6e];
    const g = guest(code, IO, "protected");
    expect(g.lp.vmlaunch()).toBe(30);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt((1 << 7) | (3 << 15)));
    expect(g.lp.vmread(F.GUEST_LINEAR_ADDRESS)).toBe(0x12345678n);
    const h = guest(code, IO, "protected");
    h.lp.vmwrite(F.GUEST_RIP, 0x1006);
    h.cpu.setGpr(6, 0x12345678n);
    expect(h.lp.vmlaunch()).toBe(30);
    expect(h.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt(3 << 15));
    expect(h.lp.vmread(F.GUEST_LINEAR_ADDRESS)).toBe(0x5678n);
  });

  it("LGDT with an ES override: identity, memory operand, displacement as qualification", () => {
    const g = guest([0x26, 0x0f, 0x01, 0x16, 0x00, 0x20], DT); // lgdt es:[0x2000]
    expect(g.lp.vmlaunch()).toBe(46);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt((2 << 28) | INDEX_INVALID | BASE_INVALID));
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x2000n);
  });

  it("SIDT [bp+di] in 32-bit code with an operand-size prefix cleared: SS, 32-bit operand size", () => {
    const g = guest([0x67, 0x0f, 0x01, 0x0b], DT, "protected"); // a16 sidt [bp+di]
    expect(g.lp.vmlaunch()).toBe(46);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(
      BigInt((1 << 28) | (1 << 11) | (2 << 15) | (7 << 18) | (5 << 23)),
    );
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0n);
  });

  it("STR to a register in 32-bit code: reason 47, the register in 6:3, bit 10 set", () => {
    const g = guest([0x0f, 0x00, 0xcb], DT, "protected"); // str bx
    expect(g.lp.vmlaunch()).toBe(47);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt((1 << 28) | (3 << 3) | (1 << 7) | (1 << 10)));
  });

  it("LLDT from memory with a displacement: the qualification is the sign-extended displacement", () => {
    const g = guest([0x66, 0x67, 0x0f, 0x00, 0x57, 0xfe], DT, "protected"); // a16 lldt [bx-2]
    expect(g.lp.vmlaunch()).toBe(47);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(
      BigInt((2 << 28) | (3 << 15) | INDEX_INVALID | (3 << 23)),
    );
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0xfffffffffffffffen);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(6n);
  });

  it("VMPTRLD [si+4] executed by the guest: reason 21 with its operand", () => {
    const g = guest([0x0f, 0xc7, 0x74, 0x04]); // vmptrld [si+4]
    expect(g.lp.vmlaunch()).toBe(21);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt((3 << 15) | INDEX_INVALID | (6 << 23)));
    expect(g.lp.vmread(F.EXIT_QUALIFICATION)).toBe(4n);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(4n);
  });

  it("VMWRITE between registers: reg1 in 6:3, bit 10, reg2 in 31:28", () => {
    const g = guest([0x0f, 0x79, 0xd9], {}, "protected"); // vmwrite ebx, ecx
    expect(g.lp.vmlaunch()).toBe(25);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(
      BigInt(((3 << 28) | (1 << 3) | (1 << 7) | (1 << 10)) >>> 0),
    );
  });

  it("VMCALL and VMLAUNCH carry no instruction information", () => {
    const g = guest([0x0f, 0x01, 0xc1]);
    expect(g.lp.vmlaunch()).toBe(18);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(0n);
  });

  it("RDSEED exiting on and off: destination register and operand size", () => {
    const on = guest([0x66, 0x0f, 0xc7, 0xfb, 0xf4], { proc2: Proc2.RDSEED }); // rdseed ebx; hlt
    expect(on.lp.vmlaunch()).toBe(61);
    expect(on.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt((3 << 3) | (1 << 11)));
    const off = guest([0x66, 0x0f, 0xc7, 0xfb, 0xf4]);
    expect(off.lp.vmlaunch()).toBe(12);
  });

  it("RDRAND exiting: 16-bit destination in real mode", () => {
    const g = guest([0x0f, 0xc7, 0xf2], { proc2: Proc2.RDRAND }); // rdrand dx
    expect(g.lp.vmlaunch()).toBe(57);
    expect(g.lp.vmread(F.VMX_INSTRUCTION_INFO)).toBe(BigInt(2 << 3));
  });
});
