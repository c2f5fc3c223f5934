// Writes a CPU refuses fault in the interpreter as the SDM says, instead of storing a value that the
// software VT-x's next VM entry would reject: MOV to CR0/CR3/CR4, WRMSR, XSETBV/XGETBV, LGDT/LIDT,
// MOV to DR7, branches to non-canonical addresses, sequential execution off the top of the
// canonical range, and real-mode accesses past a segment's 64 KiB limit (blocks and single steps).
// Privileged instructions cannot run on the host-CPU oracle (user mode only): each case names the
// SDM rule it follows. test/soft/arch-faults.test.ts runs the same guests through the soft backend.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, hex, loggedVector, type Mode, makeGuest, PML4, r64 } from "./guest.js";

const GP = 13;
const UD = 6;
const SS = 12;

function run(mode: Mode, code: string, setup?: (g: ReturnType<typeof makeGuest>) => void) {
  const g = makeGuest(mode, hex(code));
  setup?.(g);
  expect(g.run()).toBe(StopReason.Halted);
  return { g, vector: loggedVector(g) };
}

/** RIP in the exception frame (long mode; #GP pushes an error code first) */
function frameRip(g: ReturnType<typeof makeGuest>, withCode = true): bigint {
  const rsp = Number(g.cpu.getGpr(4));
  return r64(g.ram, rsp + (withCode ? 8 : 0));
}

describe("MOV to CR0/CR3/CR4 (SDM Vol. 2B MOV—Move to/from Control Registers)", () => {
  it.each([
    ["CR4 = 0xFFFFFFFF (reserved bits)", "b8 ff ff ff ff 0f 22 e0 f4"],
    ["CR4.VME (CPUID.1:EDX.VME = 0)", "0f 20 e0 83 c8 01 0f 22 e0 f4"],
    ["CR4.OSXSAVE (CPUID.1:ECX.XSAVE = 0)", "0f 20 e0 0d 00 00 04 00 0f 22 e0 f4"],
    ["clearing CR0.PG in 64-bit mode", "0f 20 c0 0f ba f0 1f 0f 22 c0 f4"],
    ["CR0 bit 32", "0f 20 c0 48 0f ba e8 20 0f 22 c0 f4"],
    ["CR0.NW without CR0.CD", "0f 20 c0 0f ba e8 1d 0f ba f0 1e 0f 22 c0 f4"],
    ["CR3 bit 39 (MAXPHYADDR is 39)", "0f 20 d8 48 0f ba e8 27 0f 22 d8 f4"],
    ["CR3 bit 63 without CR4.PCIDE", "0f 20 d8 48 0f ba e8 3f 0f 22 d8 f4"],
  ])("%s is #GP(0) and leaves the register as it was", (_name, code) => {
    const { g, vector } = run("long", code);
    expect(vector).toBe(GP);
    expect(g.cpu.getControl("cr0")).toBe(0x80000011n);
    expect(g.cpu.getControl("cr3")).toBe(BigInt(PML4));
    expect(g.cpu.getControl("cr4")).toBe(0x20n);
  });

  it("allowed writes go through: CR4.PGE, CR3 with PWT/PCD (bits 11:0 are not checked)", () => {
    expect(run("long", "0f 20 e0 0d 80 00 00 00 0f 22 e0 f4").g.cpu.getControl("cr4")).toBe(0xa0n);
    const { g, vector } = run("long", "0f 20 d8 83 c8 18 0f 22 d8 f4");
    expect(vector).toBe(-1);
    expect(g.cpu.getControl("cr3")).toBe(BigInt(PML4 | 0x18));
  });

  it("CR0.PG with EFER.LME and CR4.PAE clear is #GP(0): IA-32e mode needs PAE", () => {
    const { g, vector } = run(
      "prot32",
      "b9 80 00 00 c0 0f 32 0f ba e8 08 0f 30 0f 20 c0 0f ba e8 1f 0f 22 c0 f4",
    );
    expect(vector).toBe(GP);
    expect(g.cpu.getControl("efer")).toBe(0x100n);
    expect(g.cpu.getControl("cr0") & 0x80000000n).toBe(0n);
  });

  it("reserved CR0 bits 31:0 are ignored, not stored; ET reads as 1", () => {
    // mov eax, 0x0000ffc1 (PE + bits 15:6); mov cr0, eax; hlt
    const { g, vector } = run("prot32", "b8 c1 ff 00 00 0f 22 c0 f4");
    expect(vector).toBe(-1);
    expect(g.cpu.getControl("cr0")).toBe(0x11n);
  });
});

describe("WRMSR (SDM Vol. 2B WRMSR: reserved bits, unsupported values and MSRs are #GP(0))", () => {
  it("the issue's example: a reserved memory type in IA32_PAT, in protected mode", () => {
    const before = makeGuest("prot32", []).cpu.getControl("pat");
    const { g, vector } = run("prot32", "b9 77 02 00 00 b8 02 00 00 00 ba 00 00 00 00 0f 30 f4");
    expect(vector).toBe(GP);
    expect(g.cpu.getControl("pat")).toBe(before);
  });

  it.each([
    ["EFER bit 1 (reserved)", "b9 80 00 00 c0 0f 32 83 c8 02 0f 30 f4"],
    ["EFER.LME cleared while paging is on", "b9 80 00 00 c0 0f 32 0f ba f0 08 0f 30 f4"],
    ["IA32_PAT type 3 (reserved) in the top byte", "b9 77 02 00 00 b8 06 06 06 06 ba 03 06 06 06 0f 30 f4"],
    ["MTRR_DEF_TYPE bit 12 (reserved)", "b9 ff 02 00 00 b8 06 10 00 00 31 d2 0f 30 f4"],
    ["MTRR_PHYSBASE0 type 2 (reserved)", "b9 00 02 00 00 b8 02 00 00 00 31 d2 0f 30 f4"],
    ["MSR 0x210 (MTRRCAP.VCNT = 8: no 9th variable range)", "b9 10 02 00 00 b8 06 00 00 00 31 d2 0f 30 f4"],
    ["MTRR_FIX64K_00000 with UC- (7)", "b9 50 02 00 00 b8 07 06 06 06 ba 06 06 06 06 0f 30 f4"],
    ["IA32_APIC_BASE.x2APIC (not offered)", "b9 1b 00 00 00 0f 32 0f ba e8 0a 0f 30 f4"],
    ["IA32_FEATURE_CONTROL once locked", "b9 3a 00 00 00 31 c0 31 d2 0f 30 f4"],
    ["an MSR that does not exist (0x12345)", "b9 45 23 01 00 31 c0 31 d2 0f 30 f4"],
    ["FS_BASE = 0x0000800000000000 (non-canonical)", "b9 00 01 00 c0 31 c0 ba 00 80 00 00 0f 30 f4"],
    ["KERNEL_GS_BASE non-canonical", "b9 02 01 00 c0 31 c0 ba 78 56 34 12 0f 30 f4"],
    ["IA32_LSTAR non-canonical", "b9 82 00 00 c0 31 c0 ba 00 00 01 00 0f 30 f4"],
  ])("%s is #GP(0)", (_name, code) => {
    const locked = (g: ReturnType<typeof makeGuest>) => g.cpu.setMsr(0x3a, 1n);
    expect(run("long", code, locked).vector).toBe(GP);
  });

  it("valid values are written: EFER.NXE, a PAT of WC/WT/WP/UC-, an MTRR default type", () => {
    expect(run("long", "b9 80 00 00 c0 0f 32 0f ba e8 0b 0f 30 f4").g.cpu.getControl("efer")).toBe(0xd00n);
    const pat = run("long", "b9 77 02 00 00 b8 06 06 06 06 ba 01 04 05 07 0f 30 f4");
    expect([pat.vector, pat.g.cpu.getControl("pat")]).toEqual([-1, 0x0705040106060606n]);
  });
});

describe("XSAVE state and descriptor tables", () => {
  it("XGETBV and XSETBV with CR4.OSXSAVE = 0 are #UD (SDM Vol. 2C XGETBV/XSETBV)", () => {
    expect(run("long", "31 c9 0f 01 d0 f4").vector).toBe(UD);
    expect(run("long", "31 c9 b8 03 00 00 00 31 d2 0f 01 d1 f4").vector).toBe(UD);
  });

  it.each([
    ["ECX = 1 (no XCR1)", "b9 01 00 00 00 b8 03 00 00 00 31 d2 0f 01 d1 f4"],
    ["XCR0.x87 clear", "31 c9 31 c0 31 d2 0f 01 d1 f4"],
    ["AVX without SSE (and AVX not supported)", "31 c9 b8 05 00 00 00 31 d2 0f 01 d1 f4"],
  ])("with CR4.OSXSAVE set by the host, XSETBV of %s is #GP(0)", (_name, code) => {
    const { g, vector } = run("long", code, (g) => g.cpu.setControl("cr4", 0x40020n));
    expect(vector).toBe(GP);
    expect(g.cpu.getControl("cr4")).toBe(0x40020n);
  });

  it("with CR4.OSXSAVE set, XSETBV of x87|SSE is taken and XGETBV reads it back", () => {
    const { g, vector } = run("long", "31 c9 b8 03 00 00 00 31 d2 0f 01 d1 0f 01 d0 f4", (g) =>
      g.cpu.setControl("cr4", 0x40020n),
    );
    expect([vector, g.cpu.getGpr(0), g.cpu.getGpr(2)]).toEqual([-1, 3n, 0n]);
  });

  it.each([
    ["LGDT", "0f 01 14 25"],
    ["LIDT", "0f 01 1c 25"],
  ])("%s of a non-canonical base in 64-bit mode is #GP(0), the register unchanged", (name, op) => {
    // mov rax, 0x800000000000; mov [0x7002], rax; mov word [0x7000], 0xfff; lxdt [0x7000]; hlt
    const code = `48 b8 00 00 00 00 00 80 00 00 48 89 04 25 02 70 00 00 66 c7 04 25 00 70 00 00 ff 0f ${op} 00 70 00 00 f4`;
    const { g, vector } = run("long", code);
    expect(vector).toBe(GP);
    const table = name === "LGDT" ? g.cpu.getGdtr() : g.cpu.getIdtr();
    expect(table.base).not.toBe(0x800000000000n);
  });

  it("MOV to DR7 with bit 32 set is #GP(0) in 64-bit mode", () => {
    expect(run("long", "0f 21 f8 48 0f ba e8 20 0f 23 f8 f4").vector).toBe(GP);
  });
});

describe("non-canonical RIP (SDM Vol. 2A JMP/CALL/RET, Vol. 2B IRET: #GP(0) at the branch)", () => {
  it.each([
    ["JMP r64", "48 b8 00 00 00 00 00 80 00 00 ff e0", 10, 0n],
    ["CALL r64 (nothing pushed)", "48 b8 00 00 00 00 00 80 00 00 ff d0", 10, 0n],
    ["RET (RSP not popped)", "48 b8 00 00 00 00 00 80 00 00 50 c3", 11, 8n],
    ["IRETQ (nothing popped)", "48 b8 00 00 00 00 00 80 00 00 6a 00 54 9c 6a 18 50 48 cf", 17, 40n],
  ])("%s to 0x800000000000 faults at the branch", (_name, code, at, pushed) => {
    const g = makeGuest("long", hex(code));
    const rsp0 = g.cpu.getGpr(4);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(GP);
    expect(frameRip(g)).toBe(BigInt(CODE + at));
    // the frame (error code, RIP, CS, RFLAGS, RSP, SS) sits right below what the guest had pushed
    expect(r64(g.ram, Number(g.cpu.getGpr(4)) + 32)).toBe(rsp0 - pushed);
  });

  /** maps the last page of the lower canonical half (0x7FFFFFFFF000) to guest-physical 0x33000 */
  function topPage(g: ReturnType<typeof makeGuest>, code: string, at: number): void {
    const w = (a: number, v: number) => {
      g.ram[a] = v & 0xff;
      g.ram[a + 1] = (v >> 8) & 0xff;
      g.ram[a + 2] = (v >> 16) & 0xff;
      g.ram[a + 3] = v >>> 24;
    };
    w(PML4 + 255 * 8, 0x30000 | 7);
    w(0x30000 + 511 * 8, 0x31000 | 7);
    w(0x31000 + 511 * 8, 0x32000 | 7);
    w(0x32000 + 511 * 8, 0x33000 | 7);
    g.ram.set(hex(code), 0x33000 + at);
  }
  // mov rax, 0x7ffffffffXXX; jmp rax
  const jumpTo = (off: number) =>
    `48 b8 ${(off & 0xff).toString(16)} ${(0xf0 | (off >> 8)).toString(16)} ff ff ff 7f 00 00 ff e0`;

  it("JMP rel8 from the last canonical page to past it faults at the JMP", () => {
    const g = makeGuest("long", hex(jumpTo(0xff0)));
    topPage(g, "eb 20", 0xff0);
    expect(g.run()).toBe(StopReason.Halted);
    expect([loggedVector(g), frameRip(g)]).toEqual([GP, 0x7ffffffffff0n]);
  });

  it("an instruction ending at 0x800000000000: #GP(0) with RIP 0x800000000000 (the next fetch)", () => {
    const g = makeGuest("long", hex(jumpTo(0xffe)));
    topPage(g, "90 90", 0xffe);
    expect(g.run()).toBe(StopReason.Halted);
    expect([loggedVector(g), frameRip(g)]).toEqual([GP, 0x800000000000n]);
  });

  it("an instruction whose bytes cross 0x800000000000 faults at the instruction", () => {
    const g = makeGuest("long", hex(jumpTo(0xffe)));
    topPage(g, "48 89 c0", 0xffe);
    expect(g.run()).toBe(StopReason.Halted);
    expect([loggedVector(g), frameRip(g)]).toEqual([GP, 0x7ffffffffffen]);
  });

  it("SYSCALL on the last canonical page enters with RCX = 0x800000000000; SYSRET to it is #GP in ring 0", () => {
    const g = makeGuest("long", hex(jumpTo(0xffe)));
    topPage(g, "0f 05", 0xffe);
    g.ram.set(hex("48 0f 07"), CODE + 0x100); // the kernel: SYSRETQ
    g.cpu.setMsr(0xc0000080, 0xd01n);
    g.cpu.setMsr(0xc0000081, 0x0028_0018_0000_0000n); // STAR: kernel CS 0x18
    g.cpu.setMsr(0xc0000082, BigInt(CODE + 0x100));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(1)).toBe(0x800000000000n);
    expect([loggedVector(g), frameRip(g)]).toEqual([GP, BigInt(CODE + 0x100)]);
    expect(g.cpu.cpl).toBe(0);
  });
});

describe("SYSCALL and SYSRET outside 64-bit mode (SDM Vol. 2B: #UD on Intel, whose vendor the CPU reports)", () => {
  // wrmsr EFER = SCE (ecx = 0xC0000080, eax = 1, edx = 0), then the instruction, then hlt
  const sce = "b9 80 00 00 c0 b8 01 00 00 00 31 d2 0f 30";
  it.each([
    ["SYSCALL", "0f 05"],
    ["SYSRET", "0f 07"],
  ])("%s in 32-bit protected mode with EFER.SCE = 1 is #UD", (_name, insn) => {
    const { g, vector } = run("prot32", `${sce} ${insn} f4`);
    expect(vector).toBe(UD);
    expect(g.cpu.getControl("efer") & 1n).toBe(1n);
    expect(g.cpu.cpl).toBe(0);
  });

  it("SYSCALL in 64-bit mode with EFER.SCE = 0 is #UD; with SCE = 1 it enters at LSTAR", () => {
    const off = run("long", "0f 05 f4", (g) => g.cpu.setMsr(0xc0000080, 0xd00n));
    expect(off.vector).toBe(UD);
    const on = run("long", "0f 05 f4", (g) => {
      g.cpu.setMsr(0xc0000080, 0xd01n);
      g.cpu.setMsr(0xc0000081, 0x0028_0018_0000_0000n);
      g.cpu.setMsr(0xc0000082, BigInt(CODE + 2)); // the HLT after the SYSCALL
    });
    expect(on.vector).toBe(-1);
    expect(on.g.cpu.getGpr(1)).toBe(BigInt(CODE + 2));
  });
});

describe("real mode: an access past the 64 KiB segment limit (SDM Vol. 3B 21.1.1)", () => {
  it("a word at DS:0xFFFF is #GP, a dword at DS:0xFFFC is not", () => {
    const { g, vector } = run("real", "a1 ff ff f4", (g) => g.cpu.setGpr(0, 0x1234n));
    expect(vector).toBe(GP);
    expect(g.cpu.getGpr(0)).toBe(0x1234n);
    expect(run("real", "66 a1 fc ff f4").vector).toBe(-1);
  });

  it("a push with SP = 1 is #SS; its frame has no room on that stack either: #DF, then shutdown", () => {
    const seen: number[] = [];
    const g = makeGuest("real", hex("bc 01 00 50 f4"), {
      event: (v) => {
        seen.push(v);
        return false;
      },
    });
    expect(g.run()).toBe(StopReason.Shutdown);
    expect(seen).toEqual([SS, 8]);
  });

  it.each([true, false])("a loop of word loads faults at SI = 0xFFFF (blocks: %s)", (blocks) => {
    // xor si, si; l: mov ax, [si]; inc si; jmp l
    const g = makeGuest("real", hex("31 f6 8b 04 46 eb fb"));
    g.cpu.decodeCache = blocks;
    g.cpu.jitThreshold = 4;
    expect(g.run(2_000_000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(GP);
    expect(g.cpu.getGpr(6) & 0xffffn).toBe(0xffffn);
    if (blocks) expect(g.cpu.blocksBuilt).toBeGreaterThan(0);
  });

  it("PUSH below SP = 0 wraps to 0xFFFE without faulting (a word at 0xFFFE is within the limit)", () => {
    // mov sp, 0x20; mov cx, 0x20; l: push ax; loop l; hlt  (SP 0x20 -> 0xFFE0 via 0)
    const g = makeGuest("real", hex("bc 20 00 b9 20 00 50 e2 fd f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getGpr(4) & 0xffffn).toBe(0xffe0n);
  });
});
