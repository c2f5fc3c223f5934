// Protection keys (SDM Vol. 3A 4.6.2, 4.7; Vol. 2B RDPKRU/WRPKRU) in the bare interpreter: CPUID
// offers PKU and reflects CR4.PKE in OSPKE, RDPKRU/WRPKRU fault as the SDM lists, and in IA-32e
// paging a user-mode page's key (PTE bits 62:59) restricts data accesses through PKRU's AD and WD
// bits, at CPL 3 and CPL 0 alike (WD for supervisor writes only with CR0.WP), never fetches, with
// the PK bit (5) in the #PF error code.
import { describe, expect, it } from "vitest";
import { cpuidModel, Interpreter, StopReason } from "../../lib/cpu/index.js";
import { answerCpuid } from "../../lib/vmm/backends/soft/cpuid.js";
import { applySoftVcpu, captureSoftVcpu } from "../../lib/vmm/backends/soft/saved-state.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { rigWith } from "../vmx/setup.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, PML4, r32, r64, SEL } from "./guest.js";

const PAE = 0x20;
const PKE = 0x400000;
const WP = 0x10000;
const UD = 6;
const GP = 13;
const PF = 14;
/** the long-mode guest's page directory (2 MiB pages, identity, all user pages): entry 2 maps 0x400000 */
const PD = PML4 + 0x2000;
const PAGE = 0x400000;
const KEY = 5;
const AD = 1 << (2 * KEY);
const WD = 2 << (2 * KEY);

function w32(ram: Uint8Array, a: number, v: number): void {
  new DataView(ram.buffer, ram.byteOffset).setUint32(a, v >>> 0, true);
}

/** 64-bit guest at CPL 0 with CR4.PKE (or not), PKRU, and the page at 0x400000 keyed KEY */
function guest(code: string, opts: { pke?: boolean; pkru?: number; wp?: boolean; pde?: number } = {}): Guest {
  const g = makeGuest("long", hex(code));
  g.cpu.setControl("cr4", BigInt(PAE | (opts.pke === false ? 0 : PKE)));
  if (opts.wp) g.cpu.setControl("cr0", g.cpu.getControl("cr0") | BigInt(WP));
  w32(g.ram, PD + 16, opts.pde ?? 0x400087);
  w32(g.ram, PD + 16 + 4, KEY << 27);
  g.ram.set([0x11, 0x22, 0x33, 0x44], PAGE);
  g.cpu.pkru = opts.pkru ?? 0;
  return g;
}

/** the guest runs at CPL 3 (64-bit user code and stack); exceptions go to the TSS's ring-0 stack */
function user(g: Guest): Guest {
  g.cpu.setSegment(1, { selector: SEL.ucode64, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
  g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
  g.cpu.setGpr(4, 0x7000n);
  return g;
}

/** [vector, error code, RIP] of the exception frame ([#UD, RIP] for #UD), or [-1] */
function fault(g: Guest): (number | bigint)[] {
  const v = loggedVector(g);
  if (v === -1) return [-1];
  const rsp = Number(g.cpu.getGpr(4));
  return v === UD ? [v, r64(g.ram, rsp)] : [v, r32(g.ram, rsp), r64(g.ram, rsp + 8)];
}

const READ = "8b 04 25 00 00 40 00 f4"; // mov eax, [0x400000]; hlt
const WRITE = "89 1c 25 00 00 40 00 f4"; // mov [0x400000], ebx; hlt
/** at CPL 3, where HLT is #GP: ud2 ends a run that got through, logged as #UD at its address */
const USER_READ = "8b 04 25 00 00 40 00 0f 0b";
const USER_END = [UD, BigInt(CODE + 7)];

describe("CPUID and CR4 offer protection keys", () => {
  it("CPUID.7.0:ECX[3] PKU in the model and as the soft backend answers; OSPKE follows CR4.PKE", () => {
    for (const answer of [
      (cr4: number) => cpuidModel(7, 0, 0, cr4),
      (cr4: number) => answerCpuid(7, 0, 0, 1, false, cr4),
    ]) {
      expect(answer(0)[2] & (1 << 3)).not.toBe(0);
      expect(answer(0)[2] & (1 << 4)).toBe(0);
      expect(answer(PKE)[2] & (1 << 4)).not.toBe(0);
    }
  });

  it("MOV to CR4 sets PKE, and the guest's CPUID then reports OSPKE", () => {
    // mov rax, cr4; or eax, 0x400000; mov cr4, rax; mov eax, 7; xor ecx, ecx; cpuid; hlt
    const g = guest("0f 20 e0 0d 00 00 40 00 0f 22 e0 b8 07 00 00 00 31 c9 0f a2 f4", { pke: false });
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getControl("cr4")) & PKE).toBe(PKE);
    expect(Number(g.cpu.getGpr(1)) & 0x18).toBe(0x18);
  });
});

describe("RDPKRU and WRPKRU", () => {
  // mov eax, 0x12345678; xor ecx, ecx; xor edx, edx; wrpkru; xor eax, eax; dec rdx; rdpkru; hlt
  const roundTrip = "b8 78 56 34 12 31 c9 31 d2 0f 01 ef 31 c0 48 ff ca 0f 01 ee f4";

  it("write PKRU from EAX and read it back into EAX, EDX = 0 (upper halves cleared)", () => {
    const g = guest(roundTrip);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.pkru).toBe(0x12345678);
    expect(g.cpu.getGpr(0)).toBe(0x12345678n);
    expect(g.cpu.getGpr(2)).toBe(0n);
  });

  it("work at CPL 3 too", () => {
    const g = user(guest(`${roundTrip.slice(0, -3)} 0f 0b`));
    expect(g.run()).toBe(StopReason.Halted);
    expect(fault(g)).toEqual([UD, BigInt(CODE + 20)]);
    expect(g.cpu.getGpr(0)).toBe(0x12345678n);
  });

  it("#UD without CR4.PKE", () => {
    for (const code of ["0f 01 ee f4", "31 c9 31 d2 0f 01 ef f4"]) {
      const g = guest(code, { pke: false });
      expect(g.run()).toBe(StopReason.Halted);
      expect(fault(g)).toEqual([UD, BigInt(CODE + (code.length > 11 ? 4 : 0))]);
    }
  });

  it("#GP(0) when ECX != 0 (both) or EDX != 0 (WRPKRU)", () => {
    // mov ecx, 1; rdpkru
    let g = guest("b9 01 00 00 00 0f 01 ee f4");
    g.run();
    expect(fault(g)).toEqual([GP, 0, BigInt(CODE + 5)]);
    // xor ecx, ecx; mov edx, 1; wrpkru
    g = guest("31 c9 ba 01 00 00 00 0f 01 ef f4", { pkru: WD });
    g.run();
    expect(fault(g)).toEqual([GP, 0, BigInt(CODE + 7)]);
    expect(g.cpu.pkru).toBe(WD);
  });

  it("PKRU travels with the x87/SSE state", () => {
    const g = guest("f4", { pkru: 0xc });
    expect(g.cpu.getExtendedState().pkru).toBe(0xc);
    const h = guest("f4");
    h.cpu.setExtendedState(g.cpu.getExtendedState());
    expect(h.cpu.pkru).toBe(0xc);
  });
});

describe("protection keys in the page walk", () => {
  it("AD: a user read faults with P|U|PK, CR2 the address", () => {
    const g = user(guest(READ, { pkru: AD }));
    g.run();
    expect(fault(g)).toEqual([PF, 0x25, BigInt(CODE)]);
    expect(g.cpu.getControl("cr2")).toBe(BigInt(PAGE));
  });

  it("AD: a supervisor read of the user page faults too (P|PK)", () => {
    const g = guest(READ, { pkru: AD });
    g.run();
    expect(fault(g)).toEqual([PF, 0x21, BigInt(CODE)]);
  });

  it("WD: reads go on, a user write faults with P|W|U|PK", () => {
    let g = user(guest(USER_READ, { pkru: WD }));
    expect(g.run()).toBe(StopReason.Halted);
    expect(fault(g)).toEqual(USER_END);
    expect(g.cpu.getGpr(0)).toBe(0x44332211n);
    g = user(guest(WRITE, { pkru: WD }));
    g.run();
    expect(fault(g)).toEqual([PF, 0x27, BigInt(CODE)]);
    expect(r32(g.ram, PAGE)).toBe(0x44332211);
  });

  it("WD: a supervisor write faults only with CR0.WP = 1", () => {
    let g = guest(WRITE, { pkru: WD });
    g.cpu.setGpr(3, 0xabcdn);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(r32(g.ram, PAGE)).toBe(0xabcd);
    g = guest(WRITE, { pkru: WD, wp: true });
    g.run();
    expect(fault(g)).toEqual([PF, 0x23, BigInt(CODE)]);
  });

  it("instruction fetches are not checked", () => {
    // mov rax, 0x400000; jmp rax (a HLT there)
    const g = user(guest("48 c7 c0 00 00 40 00 ff e0", { pkru: AD | WD }));
    g.ram.set([0x0f, 0x0b], PAGE);
    expect(g.run()).toBe(StopReason.Halted);
    expect(fault(g)).toEqual([UD, BigInt(PAGE)]);
  });

  it("only the page's own key counts, and supervisor pages have none", () => {
    // every key but 0 (the stack and code) and the page's denies everything
    let g = user(guest(USER_READ, { pkru: ~(AD | WD | 3) }));
    expect(g.run()).toBe(StopReason.Halted);
    expect(fault(g)).toEqual(USER_END);
    // U/S = 0: a supervisor page, whatever bits 62:59 hold
    g = guest(READ, { pkru: AD, pde: 0x400083 });
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
  });

  it("without CR4.PKE keys are ignored", () => {
    const g = user(guest(USER_READ, { pkru: AD, pke: false }));
    expect(g.run()).toBe(StopReason.Halted);
    expect(fault(g)).toEqual(USER_END);
  });

  it("PK is reported beside another violation (a user write to a read-only page)", () => {
    const g = user(guest(WRITE, { pkru: AD, pde: 0x400085 }));
    g.run();
    expect(fault(g)).toEqual([PF, 0x27, BigInt(CODE)]);
  });

  it("WRPKRU takes effect at once over a translation already cached", () => {
    // mov eax, [0x400000]; mov eax, AD; xor ecx, ecx; xor edx, edx; wrpkru; mov eax, [0x400000]; hlt
    const ad = AD.toString(16).padStart(8, "0");
    const imm = [6, 4, 2, 0].map((i) => ad.slice(i, i + 2)).join(" ");
    const g = user(guest(`8b 04 25 00 00 40 00 b8 ${imm} 31 c9 31 d2 0f 01 ef 8b 04 25 00 00 40 00 f4`));
    g.run();
    expect(fault(g)).toEqual([PF, 0x25, BigInt(CODE + 19)]);
  });
});

describe("protection keys on the soft backend", () => {
  it("the guest sets CR4.PKE and PKRU; PKRU outlasts a VM exit and CPUID (answered by the host) says OSPKE", async () => {
    const code = hex(`
      0f 20 e0 0d 00 00 40 00 0f 22 e0
      b8 78 56 34 12 31 c9 31 d2 0f 01 ef
      e6 80
      31 c0 31 c9 0f 01 ee 89 c6
      b8 07 00 00 00 31 c9 0f a2
      f4`);
    const vm = await createMachine({ backend: "soft", memoryMiB: 4 });
    try {
      vm.loadFlat(Uint8Array.from(code), { address: 0x100000, mode: "long" });
      let exits = 0;
      vm.io.onOut(0x80, () => {
        exits++;
      });
      expect((await vm.run({ timeoutMs: 10_000 })).reason).toBe("hlt");
      const regs = vm.vcpu(0).getRegs();
      expect(exits).toBe(1);
      expect(regs.rsi).toBe(0x12345678n);
      expect(regs.rcx & 0x18n).toBe(0x18n); // PKU and OSPKE
      expect(vm.vcpu(0).getSregs().cr4 & BigInt(PKE)).toBe(BigInt(PKE));
    } finally {
      vm.close();
    }
  });
});

describe("PKRU in the soft vCPU's saved state", () => {
  it("is captured and applied with the x87/SSE state; a record without it loads 0", () => {
    const from = rigWith(new Interpreter());
    from.cpu.pkru = 0x30;
    const saved = captureSoftVcpu(from.lp, undefined);
    expect(saved.soft.pkru).toBe(0x30);
    const to = rigWith(new Interpreter());
    applySoftVcpu(to.lp, { soft: saved.soft });
    expect(to.cpu.pkru).toBe(0x30);
    const { pkru: _, ...older } = saved.soft;
    applySoftVcpu(to.lp, { soft: older });
    expect(to.cpu.pkru).toBe(0);
  });
});
