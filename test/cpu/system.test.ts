// System instructions and the hook interface: SYSCALL/SYSRET, MMIO and port I/O exits with
// precise re-execution, CPUID/MSR defaults, event injection, string instructions.
import { describe, expect, it } from "vitest";
import {
  createBareHooks,
  EventType,
  Interpreter,
  instructionLength,
  Seg,
  StopReason,
  Window,
} from "../../lib/cpu/index.js";
import { CODE, hex, loggedVector, makeGuest, r32, r64, SEL } from "./guest.js";

describe("fast system calls", () => {
  it("SYSRETQ to ring 3 and SYSCALL back to LSTAR", () => {
    const g = makeGuest(
      "long",
      hex(`b9 81 00 00 c0 31 c0 ba 18 00 30 00 0f 30 b9 82 00 00 c0 b8 4f 00 01 00 31 d2 0f 30 b9 84 00 00 c0
       b8 00 02 00 00 0f 30 b9 80 00 00 c0 0f 32 83 c8 01 0f 30 b9 42 00 01 00 41 bb 02 02 00 00 48 0f 07
       bc 00 70 00 00 b8 2a 00 00 00 0f 05 f4 48 89 cb 4c 89 da f4`),
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getRip()).toBe(0x10056n); // after the kernel's HLT
    expect(g.cpu.getGpr(3)).toBe(0x1004en); // RCX: return address after SYSCALL
    expect(g.cpu.getGpr(2) & 0x200n).toBe(0x200n); // R11: user RFLAGS with IF
    expect(g.cpu.getRflags() & 0x200n).toBe(0n); // SFMASK cleared IF
    expect(g.cpu.getSegment(Seg.CS).selector).toBe(0x18);
    expect(g.cpu.cpl).toBe(0);
    expect(g.cpu.getGpr(0)).toBe(42n);
    expect(g.cpu.getGpr(4)).toBe(0x7000n);
  });
});

describe("exits to the host", () => {
  it("an MMIO read without a completion exits with no side effect", () => {
    const g = makeGuest("long", hex("8b 04 25 00 00 90 00 f4"));
    g.cpu.setGpr(0, 0x77n);
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.hooks.lastExit).toEqual({ kind: "mmio", gpa: 0x900000, size: 4, write: false, lo: 0, hi: 0 });
    expect(g.cpu.getRip()).toBe(BigInt(CODE));
    expect(g.cpu.getGpr(0)).toBe(0x77n);
    expect(g.cpu.retired).toBe(0);
  });
  it("an MMIO read with a handler completes", () => {
    const g = makeGuest("long", hex("8b 04 25 00 00 90 00 f4"), { mmioRead: (gpa, size) => gpa + size });
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x900004n);
  });
  it("port I/O without handlers exits with the port and size", () => {
    const ram = new Uint8Array(1 << 20);
    ram.set(hex("b0 41 e6 80 f4"), 0x1000);
    const cpu = new Interpreter();
    const hooks = createBareHooks(ram);
    cpu.hooks = hooks;
    cpu.setSegment(Seg.CS, { selector: 0x100, base: 0x1000n, limit: 0xffff, ar: 0x9b });
    cpu.setRip(0n);
    expect(cpu.run(100)).toBe(StopReason.Exit);
    const e = hooks.lastExit;
    expect(e?.kind).toBe("io");
    if (e?.kind === "io") {
      expect(e.info).toMatchObject({ port: 0x80, size: 1, in: false, immediate: true });
      expect(e.ctx.length).toBe(2);
    }
    expect(cpu.getRip()).toBe(2n);
    expect(cpu.retired).toBe(1);
  });
  it("budget exhaustion stops between instructions", () => {
    const g = makeGuest("prot32", hex("40 40 40 40 f4"));
    expect(g.cpu.run(3)).toBe(StopReason.Budget);
    expect(g.cpu.getGpr(0)).toBe(3n);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 3));
  });
});

describe("CPUID and MSRs", () => {
  it("answers CPUID from the interpreter's model", () => {
    const g = makeGuest("long", hex("31 c0 0f a2 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    const s = [3, 2, 1].map((r) => Number(g.cpu.getGpr(r)));
    const text = String.fromCharCode(
      ...s.flatMap((v) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >>> 24]),
    );
    expect(text).toBe("GenuineIntel");
  });
  it("RDMSR of an unknown MSR is #GP(0)", () => {
    const g = makeGuest("long", hex("b9 45 23 01 00 0f 32 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(r64(g.ram, Number(g.cpu.getGpr(4)) + 8)).toBe(BigInt(CODE + 5));
  });
  it("MOV to CR4 of a bit CPUID does not offer (OSXSAVE, LA57) or of PCIDE outside IA-32e mode is #GP(0)", () => {
    // SMEP, SMAP and UMIP are offered (test/cpu/access-rights.test.ts), FSGSBASE and PKE
    // (test/cpu/fsgsbase-rdpid.test.ts, pku.test.ts), PCIDE too but only in IA-32e mode
    // (test/cpu/pcid.test.ts)
    for (const bit of [17, 18, 12]) {
      // mov eax,cr4; or eax,1<<bit; mov cr4,eax; hlt
      const imm = (1 << bit) >>> 0;
      const g = makeGuest("prot32", [
        0x0f,
        0x20,
        0xe0,
        0x0d,
        imm & 0xff,
        (imm >> 8) & 0xff,
        (imm >> 16) & 0xff,
        imm >>> 24,
        0x0f,
        0x22,
        0xe0,
        0xf4,
      ]);
      expect(g.run()).toBe(StopReason.Halted);
      expect(loggedVector(g), `CR4 bit ${bit}`).toBe(13);
      expect(Number(g.cpu.getControl("cr4")) & imm).toBe(0);
    }
    // the bits it implements are taken (PGE, OSFXSR, FSGSBASE, PKE)
    const ok = makeGuest("prot32", hex("0f 20 e0 0d 80 02 41 00 0f 22 e0 f4"));
    expect(ok.run()).toBe(StopReason.Halted);
    expect(loggedVector(ok)).toBe(-1);
    expect(Number(ok.cpu.getControl("cr4")) & 0x410280).toBe(0x410280);
  });
  it("FS/GS base and KERNEL_GS_BASE through the GuestCpu MSR interface", () => {
    const cpu = new Interpreter();
    expect(cpu.setMsr(0xc0000100, 0xffff800000001000n)).toBe(true);
    expect(cpu.getSegment(Seg.FS).base).toBe(0xffff800000001000n);
    expect(cpu.setMsr(0xc0000102, 0x8000000000000000n)).toBe(false); // not canonical
    expect(cpu.getMsr(0x12345)).toBeUndefined();
  });
});

describe("event injection", () => {
  it("deliverEvent vectors an external interrupt through the IDT and wakes from HLT", () => {
    const g = makeGuest("long", hex("f4 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.deliverEvent(0x14, EventType.External, undefined, 0)).toBeUndefined();
    expect(g.cpu.activity).toBe(0);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(0x14);
    expect(r64(g.ram, Number(g.cpu.getGpr(4)))).toBe(BigInt(CODE + 1));
  });
});

describe("more system and legacy instructions", () => {
  it("PUSHAD/POPAD, ENTER/LEAVE, DAA, LAR/LSL, far CALL/RETF in protected mode", () => {
    const g = makeGuest(
      "prot32",
      hex(`b8 11 11 11 11 bd 22 22 22 22 60 31 c0 31 ed 61 c8 10 00 00 c7 45 fc 55 00 00 00 c9 b0 79 04 35 27 88
       c2 0f 92 c6 66 b9 10 00 0f 02 f1 0f 03 f9 9a 38 00 01 00 08 00 f4 8b 5c 24 04 cb`),
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x11111114n);
    expect(g.cpu.getGpr(5)).toBe(0x22222222n);
    expect(g.cpu.getGpr(2) & 0xffffn).toBe(0x0114n);
    expect(r32(g.ram, 0x8eff8)).toBe(CODE + 0x37); // return EIP pushed by the far call
    expect(g.cpu.getGpr(6)).toBe(0x00c09300n);
    expect(g.cpu.getGpr(7)).toBe(0xffffffffn);
    expect(g.cpu.getGpr(3)).toBe(0x08n);
    expect(g.cpu.getGpr(4)).toBe(0x8f000n);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 0x38));
  });
  it("SYSEXIT to ring 3 and SYSENTER back", () => {
    const g = makeGuest(
      "prot32",
      hex(`b9 74 01 00 00 31 d2 b8 08 00 00 00 0f 30 b9 75 01 00 00 b8 00 60 00 00 0f 30 b9 76 01 00 00 b8 39 00 01
       00 0f 30 ba 32 00 01 00 b9 00 70 00 00 0f 35 b8 07 00 00 00 0f 34 f4`),
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(7n);
    expect(g.cpu.getGpr(4)).toBe(0x6000n);
    expect(g.cpu.cpl).toBe(0);
    expect(g.cpu.getSegment(Seg.CS).selector).toBe(0x08);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 0x3a));
  });
  it("real-mode IRET pops IP, CS and FLAGS", () => {
    const g = makeGuest("real", hex("9c 0e 6a 07 cf 90 90 b8 34 12 f4"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(0)).toBe(0x1234n);
    expect(g.cpu.getGpr(4)).toBe(0x8000n);
    expect(g.cpu.retired).toBe(6);
  });
});

describe("instruction boundaries", () => {
  it("reports interruptibility to boundary() with the STI shadow", () => {
    const g = makeGuest("prot32", hex("fb 90 90 f4"));
    const seen: [bigint, boolean][] = [];
    g.hooks.boundary = (ok) => {
      seen.push([g.cpu.getRip(), ok]);
      return false;
    };
    // the monitor trap flag asks for every boundary
    g.cpu.windowRequests = Window.MonitorTrap;
    expect(g.run()).toBe(StopReason.Halted);
    const base = BigInt(CODE);
    expect(seen).toEqual([
      [base, false],
      [base + 1n, false],
      [base + 2n, true],
      [base + 3n, true],
    ]);
  });
  it("boundary() answering true stops before the instruction", () => {
    const g = makeGuest("prot32", hex("40 40 f4"));
    let calls = 0;
    g.hooks.boundary = () => ++calls === 2;
    g.cpu.windowRequests = Window.MonitorTrap;
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 1));
    expect(g.cpu.getGpr(0)).toBe(1n);
  });
});

describe("interrupt windows with compiled blocks", () => {
  it("a shut window lets blocks run; the boundary where STI's shadow ends is still reported", () => {
    // cli; 1000 x (inc eax; inc ebx; dec ecx; jnz) ; sti; nop; inc edx; hlt
    const g = makeGuest("prot32", hex("fa b9 e8 03 00 00 40 43 49 75 fb fb 90 42 f4"));
    const seen: [bigint, boolean][] = [];
    g.hooks.boundary = (ok) => {
      seen.push([g.cpu.getRip(), ok]);
      return ok;
    };
    g.cpu.windowRequests = Window.Interrupt;
    const edx = g.cpu.getGpr(2);
    expect(g.run()).toBe(StopReason.Exit);
    const base = BigInt(CODE);
    // the window opens after STI and the NOP in its shadow: the exit is before INC EDX
    expect(g.cpu.getRip()).toBe(base + 13n);
    expect(g.cpu.getGpr(0)).toBe(1000n);
    expect(g.cpu.getGpr(2)).toBe(edx);
    expect(seen.at(-1)).toEqual([base + 13n, true]);
    expect(seen.filter(([, ok]) => ok)).toHaveLength(1);
    // blocks ran the loop: far fewer boundaries than instructions
    expect(seen.length).toBeLessThan(100);
  });
});

describe("string instructions", () => {
  it("REP MOVSB, REP STOSD, REPNE SCASB", () => {
    const g = makeGuest(
      "prot32",
      hex(`be 00 00 05 00 bf 00 10 05 00 b9 05 00 00 00 fc f3 a4 bf 00 20 05 00 b8 ef be ad de b9 03 00 00 00
       f3 ab bf 00 00 05 00 b0 33 b9 64 00 00 00 f2 ae f4`),
    );
    g.ram.set([1, 2, 0x33, 4, 5], 0x50000);
    expect(g.run()).toBe(StopReason.Halted);
    expect(Array.from(g.ram.subarray(0x51000, 0x51005))).toEqual([1, 2, 0x33, 4, 5]);
    expect([r32(g.ram, 0x52000), r32(g.ram, 0x52008), r32(g.ram, 0x5200c)]).toEqual([
      0xdeadbeef, 0xdeadbeef, 0,
    ]);
    expect(g.cpu.getGpr(7)).toBe(0x50003n); // stopped after the match
    expect(g.cpu.getGpr(1)).toBe(97n);
  });
  it("a long REP runs in chunks: budgets stop it mid-way with RIP at the instruction", () => {
    const g = makeGuest("prot32", hex("bf 00 00 05 00 b9 10 27 00 00 b0 ab f3 aa f4"));
    // three MOVs, then what is left of the budget: one iteration (which the REP's restart counts)
    expect(g.cpu.run(4)).toBe(StopReason.Budget);
    expect(g.cpu.work()).toBe(4);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 12));
    expect(g.cpu.getGpr(1)).toBe(BigInt(10000 - 1));
    expect(g.ram[0x50000]).toBe(0xab);
    expect(g.ram[0x50000 + 1]).toBe(0);
    // a budget of 100: 100 iterations, the first counted by the restart itself
    expect(g.cpu.run(100)).toBe(StopReason.Budget);
    expect(g.cpu.work()).toBe(104);
    expect(g.cpu.getRip()).toBe(BigInt(CODE + 12));
    expect(g.cpu.getGpr(1)).toBe(BigInt(10000 - 101));
    expect(g.ram[0x50000 + 100]).toBe(0xab);
    expect(g.ram[0x50000 + 101]).toBe(0);
    // no budget to speak of: chunks of 4,096 until it is done
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.cpu.getGpr(1)).toBe(0n);
    expect(g.ram[0x50000 + 9999]).toBe(0xab);
    expect(g.ram[0x50000 + 10000]).toBe(0);
  });
  it("a 16-bit address size wraps SI/DI/CX and keeps their upper halves", () => {
    const g = makeGuest("prot32", hex("be 40 00 01 00 bf 50 00 02 00 b9 04 00 01 00 67 f3 a4 f4"));
    g.ram.set([9, 8, 7, 6], 0x40);
    expect(g.run()).toBe(StopReason.Halted);
    expect(Array.from(g.ram.subarray(0x50, 0x54))).toEqual([9, 8, 7, 6]);
    expect(g.cpu.getGpr(6)).toBe(0x10044n);
    expect(g.cpu.getGpr(7)).toBe(0x20054n);
    expect(g.cpu.getGpr(1)).toBe(0x10000n);
  });
});

describe("instructionLength", () => {
  const cases: [string, 16 | 32 | 64, number][] = [
    ["48 b8 f0 de bc 9a 78 56 34 12", 64, 10],
    ["48 8b 04 25 08 10 40 00", 64, 8],
    ["66 b8 34 12", 32, 4],
    ["b8 34 12", 16, 3],
    ["c7 04 25 00 20 40 00 01 00 00 00", 64, 11],
    ["f3 4c 0f b8 c8", 64, 5],
    ["0f 22 41", 32, 3],
    ["4f f2 40 04 09", 64, 5],
    ["c8 10 00 01", 32, 4],
    ["a1 00 00 00 00 00 00 00 00", 64, 9],
    ["c5 f9 6f c1", 64, -1],
  ];
  for (const [bytes, bits, len] of cases) {
    it(`${bytes} in ${bits}-bit mode is ${len}`, () => {
      expect(instructionLength(Uint8Array.from(hex(bytes)), 0, bits)).toBe(len);
    });
  }
  it("returns -1 for truncated input", () => {
    expect(instructionLength(Uint8Array.from([0x48, 0xb8, 1, 2]), 0, 64)).toBe(-1);
  });
});

void SEL;
