// SMEP, SMAP (with EFLAGS.AC, STAC/CLAC and implicit supervisor accesses) and UMIP in the bare
// interpreter, as the SDM describes them (Vol. 3A 4.6 "Access Rights", 4.7 "Page-Fault Exceptions",
// 2.5 CR4.UMIP): the #PF error code and CR2 of each refused access, the accesses each feature still
// allows, and that translations the TLB or cached blocks hold do not outlive what allowed them.
// The soft backend and KVM run the same checks as a guest (test/soft/access-rights.test.ts).
import { describe, expect, it } from "vitest";
import { CR4_OFFERED, cpuidModel, StopReason } from "../../lib/cpu/index.js";
import { answerCpuid } from "../../lib/vmm/backends/soft/cpuid.js";
import {
  CODE,
  GDT,
  type Guest,
  hex,
  IDT,
  loggedVector,
  makeGuest,
  PML4,
  r32,
  r64,
  SEL,
  STACK_TOP,
} from "./guest.js";

const PT = 0x30000;
/** a page table for 0..2 MiB in 4 KiB pages (the implicit-access test) */
const PT0 = 0x31000;
const SMEP = 0x100000;
const SMAP = 0x200000;
const UMIP = 0x800;
const AC = 0x40000;
const PAE = 0x20;
const PF = 14;
const GP = 13;
const UD = 6;

function w64(ram: Uint8Array, a: number, v: bigint): void {
  for (let i = 0; i < 8; i++) ram[a + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/**
 * 4-level paging where 0..2 MiB (code, tables, handlers, stacks) is supervisor-only and
 * 0x400000.. uses 4 KiB pages: 0x400000 user RW, 0x401000 not present, 0x402000 user read-only,
 * 0x404000 supervisor.
 */
function longGuest(code: string, cr4: number, wp = true): Guest {
  const g = makeGuest("long", hex(code));
  w64(g.ram, PML4 + 0x2000, 0x83n); // 0..2 MiB: supervisor 2 MiB page
  w64(g.ram, PML4 + 0x2000 + 2 * 8, BigInt(PT | 7));
  w64(g.ram, PT + 0 * 8, 0x400000n | 7n);
  w64(g.ram, PT + 1 * 8, 0x401000n);
  w64(g.ram, PT + 2 * 8, 0x402000n | 5n);
  w64(g.ram, PT + 4 * 8, 0x404000n | 3n);
  g.cpu.setControl("efer", 0xd00n); // LME LMA NXE
  g.cpu.setControl("cr4", BigInt(PAE | cr4));
  g.cpu.setControl("cr0", wp ? 0x80010011n : 0x80000011n);
  return g;
}

/** [vector, error code, RIP] of the exception frame the handler stub left */
function frame(g: Guest): [number, number, bigint] {
  const rsp = Number(g.cpu.getGpr(4));
  return [loggedVector(g), r32(g.ram, rsp), r64(g.ram, rsp + 8)];
}

/**
 * 0..2 MiB in 4 KiB supervisor pages but for the code's, the user stack's (below 0x7000) and
 * `more`: CPL 3 code runs, exceptions still go to supervisor handlers, tables and stacks
 */
function userPages(g: Guest, ...more: number[]): void {
  for (let i = 0; i < 512; i++) w64(g.ram, PT0 + 8 * i, BigInt(i * 0x1000) | 3n);
  for (const page of [CODE, 0x6000, ...more]) w64(g.ram, PT0 + 8 * (page >> 12), BigInt(page) | 7n);
  w64(g.ram, PML4 + 0x2000, BigInt(PT0 | 7));
}

/** runs at CPL 3 in 64-bit mode with user stack 0x7000 */
function toUser(g: Guest): void {
  g.cpu.setSegment(1, { selector: SEL.ucode64, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
  g.cpu.setSegment(2, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
  g.cpu.setGpr(4, 0x7000n);
  expect(g.cpu.cpl).toBe(3);
}

describe("CPUID and CR4 offer SMEP, SMAP and UMIP together", () => {
  it("CPUID.7.0: EBX[7] SMEP, EBX[20] SMAP, ECX[2] UMIP, in the model and as the soft backend answers", () => {
    for (const [, ebx, ecx] of [cpuidModel(7, 0, 0), answerCpuid(7, 0, 0)]) {
      expect(ebx & (1 << 7)).not.toBe(0);
      expect(ebx & (1 << 20)).not.toBe(0);
      expect(ecx & (1 << 2)).not.toBe(0);
    }
    expect(CR4_OFFERED & (SMEP | SMAP | UMIP)).toBe(SMEP | SMAP | UMIP);
  });

  it("MOV to CR4 takes SMEP, SMAP and UMIP (and FSGSBASE and PKE); LA57, not offered, stays #GP(0)", () => {
    const movCr4 = (bit: number) => {
      const imm = (1 << bit) >>> 0;
      // mov eax, cr4; or eax, imm; mov cr4, eax; hlt
      const g = makeGuest("prot32", [
        0x0f,
        0x20,
        0xe0,
        0x0d,
        ...[0, 8, 16, 24].map((s) => (imm >>> s) & 0xff),
      ]);
      g.ram.set([0x0f, 0x22, 0xe0, 0xf4], CODE + 8);
      expect(g.run()).toBe(StopReason.Halted);
      return { vector: loggedVector(g), set: (Number(g.cpu.getControl("cr4")) & imm) !== 0 };
    };
    for (const bit of [20, 21, 11, 16, 22])
      expect(movCr4(bit), `CR4 bit ${bit}`).toEqual({ vector: -1, set: true });
    expect(movCr4(12), "CR4 bit 12").toEqual({ vector: GP, set: false });
  });
});

describe("SMEP", () => {
  // mov rax, 0x400000; jmp rax (a HLT waits at 0x400000, on a user page)
  const jmpUser = "48 c7 c0 00 00 40 00 ff e0";

  it("off: supervisor code runs from a user page", () => {
    const g = longGuest(jmpUser, 0);
    g.ram[0x400000] = 0xf4;
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getRip()).toBe(0x400001n);
  });

  it("on: a supervisor fetch from a user page is #PF with P|I, CR2 and RIP the target", () => {
    const g = longGuest(jmpUser, SMEP);
    g.ram[0x400000] = 0xf4;
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g)).toEqual([PF, 0x11, 0x400000n]);
    expect(g.cpu.getControl("cr2")).toBe(0x400000n);
  });

  it("on: user code still runs from user pages at CPL 3 (SMEP is about supervisor fetches)", () => {
    const g = longGuest(jmpUser, SMEP);
    userPages(g);
    toUser(g);
    g.ram[0x400000] = 0xf4;
    // the HLT it reached is #GP(0) at CPL 3
    g.run();
    expect(frame(g)).toEqual([GP, 0, 0x400000n]);
  });

  it("32-bit paging: I/D is reported with SMEP even without NX, also for a not-present page", () => {
    const run = (target: number, cr4: number) => {
      // mov eax, target; jmp eax
      const g = makeGuest("prot32", [0xb8, ...[0, 8, 16, 24].map((s) => (target >>> s) & 0xff), 0xff, 0xe0]);
      const pd = 0x30000;
      g.ram.set([0x83, 0, 0, 0], pd); // 0..4 MiB: supervisor 4 MiB page
      g.ram.set([0x87, 0, 0x40, 0], pd + 4); // 4..8 MiB: user 4 MiB page
      g.ram[0x400000] = 0xf4;
      g.cpu.setControl("cr3", BigInt(pd));
      g.cpu.setControl("cr4", BigInt(0x10 | cr4)); // PSE
      g.cpu.setControl("cr0", 0x80010011n);
      expect(g.run()).toBe(StopReason.Halted);
      const esp = Number(g.cpu.getGpr(4));
      return [
        loggedVector(g),
        loggedVector(g) === -1 ? -1 : r32(g.ram, esp),
        Number(g.cpu.getControl("cr2")),
      ];
    };
    expect(run(0x400000, 0)).toEqual([-1, -1, 0]);
    expect(run(0x400000, SMEP)).toEqual([PF, 0x11, 0x400000]);
    expect(run(0x800000, SMEP)).toEqual([PF, 0x10, 0x800000]);
    expect(run(0x800000, 0)).toEqual([PF, 0, 0x800000]);
  });

  it("cached and compiled blocks do not outlive MOV to CR4 setting SMEP", () => {
    // mov ecx, 2000; 1: mov rax, 0x400000; call rax; dec ecx; jnz 1b;
    // mov rax, cr4; or eax, 0x100000; mov cr4, rax; mov rax, 0x400000; call rax; hlt
    const g = longGuest(
      "b9 d0 07 00 00 48 c7 c0 00 00 40 00 ff d0 ff c9 75 f3 0f 20 e0 0d 00 00 10 00 0f 22 e0 48 c7 c0 00 00 40 00 ff d0 f4",
      0,
    );
    g.ram[0x400000] = 0xc3; // ret
    expect(g.run(10_000_000)).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(1)).toBe(0n);
    expect(frame(g)).toEqual([PF, 0x11, 0x400000n]);
    expect(g.cpu.getControl("cr2")).toBe(0x400000n);
  });
});

describe("SMAP", () => {
  it("a supervisor read of a user page with AC = 0 is #PF with P (error code 1), CR2 the address", () => {
    const g = longGuest("8b 04 25 00 00 40 00 f4", SMAP);
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g)).toEqual([PF, 1, BigInt(CODE)]);
    expect(g.cpu.getControl("cr2")).toBe(0x400000n);
  });

  it("a supervisor write with AC = 0 is #PF with P|W", () => {
    const g = longGuest("89 1c 25 00 00 40 00 f4", SMAP);
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g)).toEqual([PF, 3, BigInt(CODE)]);
    expect(g.cpu.getControl("cr2")).toBe(0x400000n);
  });

  it("after STAC (AC = 1) the explicit accesses are allowed; supervisor pages are never affected", () => {
    // stac; mov eax, [0x400000]; mov [0x400000], ebx; hlt
    const g = longGuest("0f 01 cb 8b 04 25 00 00 40 00 89 1c 25 00 00 40 00 f4", SMAP);
    g.ram.set([0x78, 0x56, 0x34, 0x12], 0x400000);
    g.cpu.setGpr(3, 0xabcdn);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x12345678n);
    expect(r32(g.ram, 0x400000)).toBe(0xabcd);
    const s = longGuest("8b 04 25 00 40 40 00 f4", SMAP); // supervisor page, AC = 0
    expect(s.run()).toBe(StopReason.Halted);
    expect(loggedVector(s)).toBe(-1);
  });

  it("CLAC takes the permission back: the translation cached under AC = 1 does not survive it", () => {
    // stac; mov eax, [0x400000]; clac; mov eax, [0x400004]; hlt
    const g = longGuest("0f 01 cb 8b 04 25 00 00 40 00 0f 01 ca 8b 04 25 04 00 40 00 f4", SMAP);
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g)).toEqual([PF, 1, BigInt(CODE + 13)]);
    expect(g.cpu.getControl("cr2")).toBe(0x400004n);
  });

  it("POPF clearing AC takes the permission back too", () => {
    // stac; mov eax, [0x400000]; push 2; popfq; mov eax, [0x400004]; hlt
    const g = longGuest("0f 01 cb 8b 04 25 00 00 40 00 6a 02 9d 8b 04 25 04 00 40 00 f4", SMAP);
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g)).toEqual([PF, 1, BigInt(CODE + 13)]);
    expect(g.cpu.getControl("cr2")).toBe(0x400004n);
  });

  it("IRET loading RFLAGS with AC = 0 takes the permission back too", () => {
    // stac; mov eax, [0x400000]; mov rax, rsp; push 0x10; push rax; push 2; push 0x18;
    // push CODE+27; iretq; (CODE+27:) mov eax, [0x400004]; hlt
    const g = longGuest(
      "0f 01 cb 8b 04 25 00 00 40 00 48 89 e0 6a 10 50 6a 02 6a 18 68 1b 00 01 00 48 cf 8b 04 25 04 00 40 00 f4",
      SMAP,
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(frame(g)).toEqual([PF, 1, BigInt(CODE + 27)]);
    expect(g.cpu.getControl("cr2")).toBe(0x400004n);
  });

  it("POPF that keeps AC = 1 keeps the permission (and a loop of it runs as compiled blocks)", () => {
    // stac; mov ecx, 3000; 1: mov eax, [0x400000]; pushfq; popfq; dec ecx; jnz 1b; hlt
    const g = longGuest("0f 01 cb b9 b8 0b 00 00 8b 04 25 00 00 40 00 9c 9d ff c9 75 f3 f4", SMAP);
    g.ram.set([0x78, 0x56, 0x34, 0x12], 0x400000);
    expect(g.run(10_000_000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(0)).toBe(0x12345678n);
    expect(g.cpu.getGpr(1)).toBe(0n);
  });

  it("POPF clearing AC in a hot loop (compiled blocks) takes the permission back at once", () => {
    // mov ecx, 3000; 1: stac; mov eax, [0x400000]; cmp ecx, 1; setne dl; movzx edx, dl;
    // shl edx, 18; or edx, 2; push rdx; popfq (AC = 0 only in the last pass);
    // mov ebx, [0x400000]; dec ecx; jnz 1b; hlt
    const g = longGuest(
      "b9 b8 0b 00 00 0f 01 cb 8b 04 25 00 00 40 00 83 f9 01 0f 95 c2 0f b6 d2 c1 e2 12 83 ca 02 52 9d " +
        "8b 1c 25 00 00 40 00 ff c9 75 da f4",
      SMAP,
    );
    expect(g.run(10_000_000)).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(1)).toBe(1n);
    expect(frame(g)).toEqual([PF, 1, BigInt(CODE + 0x20)]);
    expect(g.cpu.getControl("cr2")).toBe(0x400000n);
  });

  it("with AC = 1, CR0.WP still decides writes to read-only user pages", () => {
    // stac; mov [0x402000], ebx; hlt
    const code = "0f 01 cb 89 1c 25 00 20 40 00 f4";
    const wp = longGuest(code, SMAP, true);
    expect(wp.run()).toBe(StopReason.Halted);
    expect(frame(wp)).toEqual([PF, 3, BigInt(CODE + 3)]);
    const noWp = longGuest(code, SMAP, false);
    expect(noWp.run()).toBe(StopReason.Halted);
    expect(loggedVector(noWp)).toBe(-1);
    // AC = 0: SMAP refuses whatever WP says
    const noAc = longGuest("89 1c 25 00 20 40 00 f4", SMAP, false);
    expect(noAc.run()).toBe(StopReason.Halted);
    expect(frame(noAc)).toEqual([PF, 3, BigInt(CODE)]);
  });

  it("SMAP does not apply to user-mode accesses, nor to instruction fetches", () => {
    // mov eax, [0x400000] at CPL 3, then HLT (#GP at CPL 3)
    const g = longGuest("8b 04 25 00 00 40 00 f4", SMAP);
    userPages(g);
    toUser(g);
    g.ram.set([1, 2, 3, 4], 0x400000);
    g.run();
    expect(frame(g)).toEqual([GP, 0, BigInt(CODE + 7)]);
    expect(g.cpu.getGpr(0)).toBe(0x04030201n);
    const f = longGuest("48 c7 c0 00 00 40 00 ff e0", SMAP);
    f.ram[0x400000] = 0xf4;
    expect(f.run()).toBe(StopReason.Halted);
    expect(loggedVector(f)).toBe(-1);
  });

  it("an implicit supervisor access at CPL 3 (an LDT on a user page) faults whatever AC holds", () => {
    const LDT = 0x5000;
    const run = (cr4: number) => {
      // mov ax, 0x0f (LDT entry 1, RPL 3); mov ds, ax; hlt
      const g = longGuest("66 b8 0f 00 8e d8 f4", cr4);
      userPages(g, LDT);
      // a flat DPL-3 data segment (accessed already: no write-back)
      g.ram.set([0xff, 0xff, 0, 0, 0, 0xf3, 0xcf, 0], LDT + 8);
      g.cpu.setSegment(6, { selector: 0x50, base: BigInt(LDT), limit: 0xf, ar: 0x82 });
      toUser(g);
      g.cpu.setRflags(BigInt(AC | 2));
      g.run();
      return { frame: frame(g), cr2: g.cpu.getControl("cr2") };
    };
    // without SMAP the load succeeds and the HLT after it is #GP(0) at CPL 3
    expect(run(0).frame).toEqual([GP, 0, BigInt(CODE + 6)]);
    // with it: #PF, a supervisor read (error code P), at the descriptor
    expect(run(SMAP)).toEqual({ frame: [PF, 1, BigInt(CODE + 4)], cr2: BigInt(LDT + 8) });
  });
});

describe("SMAP and implicit supervisor accesses at CPL 0 (AC = 1 does not let them through)", () => {
  // 0x404000 a supervisor page, 0x405000 a user page right after it: a table that straddles the
  // two keeps what exception delivery needs on the supervisor side
  const USR = 0x405000;
  const guest = (code: string, cr4: number, ac: boolean): Guest => {
    const g = longGuest(code, cr4);
    w64(g.ram, PT + 5 * 8, BigInt(USR) | 7n);
    if (ac) g.cpu.setRflags(BigInt(AC | 2));
    return g;
  };
  const outcome = (g: Guest) => {
    g.run();
    return { frame: frame(g), cr2: g.cpu.getControl("cr2") };
  };

  it("a descriptor read from a GDT on a user page faults", () => {
    const run = (cr4: number, ac: boolean) => {
      // mov ax, 0x40; mov ds, ax; hlt (GDT entry 8 is the first on the user page)
      const g = guest("66 b8 40 00 8e d8 f4", cr4, ac);
      const base = USR - 0x40;
      g.ram.copyWithin(base, GDT, GDT + 0x50);
      g.cpu.setGdtr({ base: BigInt(base), limit: 0x4f });
      return outcome(g);
    };
    // without SMAP the load succeeds
    expect(run(0, true).frame[0]).toBe(-1);
    expect(run(SMAP, true)).toEqual({ frame: [PF, 1, BigInt(CODE + 4)], cr2: BigInt(USR) });
    expect(run(SMAP, false)).toEqual({ frame: [PF, 1, BigInt(CODE + 4)], cr2: BigInt(USR) });
  });

  it("an IDT gate read on a user page faults (INT 0x10 with gates 0-15 on a supervisor page)", () => {
    const run = (cr4: number, ac: boolean) => {
      // int 0x10; hlt
      const g = guest("cd 10 f4", cr4, ac);
      const base = USR - 16 * 16;
      g.ram.copyWithin(base, IDT, IDT + 0x200);
      g.cpu.setIdtr({ base: BigInt(base), limit: 0x1ff });
      return outcome(g);
    };
    expect(run(0, true).frame[0]).toBe(16);
    expect(run(SMAP, true)).toEqual({ frame: [PF, 1, BigInt(CODE)], cr2: BigInt(USR) });
  });

  it("an IST stack pointer read from a TSS on a user page faults", () => {
    const run = (cr4: number, ac: boolean) => {
      // int 0x10; hlt (its gate takes IST1)
      const g = guest("cd 10 f4", cr4, ac);
      g.ram[IDT + 16 * 16 + 4] = 1;
      w64(g.ram, USR + 0x24, BigInt(STACK_TOP - 0x2000));
      g.cpu.setSegment(7, { selector: SEL.tss, base: BigInt(USR), limit: 0x67, ar: 0x8b });
      return outcome(g);
    };
    expect(run(0, true).frame[0]).toBe(16);
    expect(run(SMAP, true)).toEqual({ frame: [PF, 1, BigInt(CODE)], cr2: BigInt(USR + 0x24) });
  });

  it("the frame pushed on a user-page stack at CPL 0 is explicit: AC = 1 lets it through", () => {
    const run = (ac: boolean) => {
      // mov rsp, USR + 0x800; int 0x10; hlt
      const g = guest("48 c7 c4 00 58 40 00 cd 10 f4", SMAP, ac);
      return g;
    };
    const g = run(true);
    g.run();
    expect(loggedVector(g)).toBe(16);
    expect(g.cpu.getGpr(4)).toBe(BigInt(USR + 0x800 - 40));
    expect(r64(g.ram, USR + 0x800 - 40)).toBe(BigInt(CODE + 9));
    // AC = 0: the push faults, and so does the #PF's own push: a double fault, then shutdown
    expect(run(false).run()).toBe(StopReason.Shutdown);
  });
});

describe("STAC and CLAC", () => {
  it("toggle EFLAGS.AC at CPL 0", () => {
    // stac; pushfq; pop rax; clac; pushfq; pop rbx; hlt
    const g = longGuest("0f 01 cb 9c 58 0f 01 ca 9c 5b f4", 0);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getGpr(0)) & AC).toBe(AC);
    expect(Number(g.cpu.getGpr(3)) & AC).toBe(0);
  });

  it("work in real mode", () => {
    const g = makeGuest("real", hex("0f 01 cb f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(Number(g.cpu.getRflags()) & AC).toBe(AC);
  });

  it("are #UD at CPL 3", () => {
    for (const code of ["0f 01 cb f4", "0f 01 ca f4"]) {
      const g = makeGuest("long", hex(code));
      toUser(g);
      g.run();
      expect(loggedVector(g), code).toBe(UD);
      expect(r64(g.ram, Number(g.cpu.getGpr(4))), code).toBe(BigInt(CODE));
    }
  });
});

describe("UMIP", () => {
  const forms: [string, string, number][] = [
    ["SGDT [rsp-16]", "0f 01 44 24 f0 f4", 5],
    ["SIDT [rsp-16]", "0f 01 4c 24 f0 f4", 5],
    ["SLDT eax", "0f 00 c0 f4", 3],
    ["SLDT [rsp-16]", "0f 00 44 24 f0 f4", 5],
    ["STR eax", "0f 00 c8 f4", 3],
    ["SMSW eax", "0f 01 e0 f4", 3],
    ["SMSW [rsp-16]", "0f 01 64 24 f0 f4", 5],
  ];
  const run = (code: string, cr4: number, user: boolean) => {
    const g = makeGuest("long", hex(code));
    g.cpu.setControl("cr4", BigInt(PAE | cr4));
    if (user) toUser(g);
    g.run();
    const rsp = Number(g.cpu.getGpr(4));
    return loggedVector(g) === -1 ? [-1] : [loggedVector(g), r32(g.ram, rsp), Number(r64(g.ram, rsp + 8))];
  };
  it.each(forms)("%s at CPL 3 with CR4.UMIP is #GP(0) at the instruction", (_name, code) => {
    expect(run(code, UMIP, true)).toEqual([GP, 0, CODE]);
  });
  it.each(forms)("%s at CPL 3 without UMIP runs (the HLT after it is the #GP)", (_name, code, len) => {
    expect(run(code, 0, true)).toEqual([GP, 0, CODE + len]);
  });
  it.each(forms)("%s at CPL 0 with CR4.UMIP runs", (_name, code) => {
    expect(run(code, UMIP, false)).toEqual([-1]);
  });
});
