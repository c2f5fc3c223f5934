// DR0-DR3/DR7 breakpoints (SDM 17.2, 17.3.1.1-17.3.1.3): instruction breakpoints as faults that RF
// lets pass once, data breakpoints on writes or reads/writes of every length as traps after the
// access, I/O breakpoints only with CR4.DE, general detect, fault-class RF, and #DB as a VM exit
// (qualification instead of DR6).
import { describe, expect, it } from "vitest";
import { Interpreter, StopReason } from "../../lib/cpu/index.js";
import { BD, debugGuest, dr7For, RF } from "./debug-support.js";
import { CODE, hex, loggedVector } from "./guest.js";

// mov eax, 0x11223344; mov [0x5002], eax; mov ebx, [0x5000]; mov byte [0x5004], 1; mov word [0x4fff], ax; hlt
const DATA64 = hex(
  "b8 44 33 22 11 89 04 25 02 50 00 00 8b 1c 25 00 50 00 00 c6 04 25 04 50 00 00 01 66 89 04 25 ff 4f 00 00 f4",
);
const DATA32 = hex(
  "b8 44 33 22 11 a3 02 50 00 00 8b 1d 00 50 00 00 c6 05 04 50 00 00 01 66 a3 ff 4f 00 00 f4",
);

describe.each([true, false])("breakpoints (decode cache %s)", (decodeCache) => {
  const saved = Interpreter.defaultDecodeCache;
  const guest = (...args: Parameters<typeof debugGuest>) => {
    Interpreter.defaultDecodeCache = decodeCache;
    try {
      return debugGuest(...args);
    } finally {
      Interpreter.defaultDecodeCache = saved;
    }
  };

  it("instruction breakpoint: #DB before the instruction, RF set by the handler lets it run once", () => {
    for (const mode of ["long", "prot32"] as const) {
      // nop; mov eax, 1; add eax, 2; hlt
      const g = guest(mode, hex("90 b8 01 00 00 00 83 c0 02 f4"));
      g.cpu.dr[1] = CODE + 1;
      g.cpu.setControl("dr7", dr7For(1, 0, 0));
      expect(g.run()).toBe(StopReason.Halted);
      expect(g.events.map((e) => [e.vector, e.bits, e.rip - CODE, e.rflags & RF])).toEqual([[1, 0b10, 1, 0]]);
      expect(Number(g.cpu.getGpr(0))).toBe(3);
      expect(Number(g.cpu.getControl("dr6")) & 0xf).toBe(0b10);
      // RF lasted one instruction
      expect(g.cpu.getRflagsNumber() & RF).toBe(0);
    }
  });

  it("instruction breakpoint in real mode goes through the IVT with IP at the instruction", () => {
    const g = guest("real", hex("90 b8 01 00 f4"));
    // the real-mode handler stubs log the vector and halt; this one returns without RF: take the
    // default stub back
    g.ram[0x8410] = 0x66;
    g.cpu.dr[0] = CODE + 1;
    g.cpu.setControl("dr7", dr7For(0, 0, 0));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(1);
    expect(g.events.map((e) => [e.vector, e.bits, e.rip])).toEqual([[1, 1, 1]]);
  });

  it("write breakpoint: traps after each write overlapping its 4 bytes, not after reads", () => {
    for (const [mode, code, rips] of [
      ["long", DATA64, [0x0c, 0x23]],
      ["prot32", DATA32, [0x0a, 0x1d]],
    ] as const) {
      const g = guest(mode, [...code]);
      g.cpu.dr[0] = 0x5000;
      g.cpu.setControl("dr7", dr7For(0, 1, 3));
      expect(g.run()).toBe(StopReason.Halted);
      expect(g.events.map((e) => [e.vector, e.bits, e.rip - CODE])).toEqual(rips.map((r) => [1, 1, r]));
      expect(g.ram[0x5002]).toBe(0x44);
    }
  });

  it("read/write breakpoint: reads trap too; the unaligned address is aligned to the length", () => {
    const g = guest("long", DATA64);
    // LEN 8 (10b) at 0x5003: covers 0x5000-0x5007, so the byte store at 0x5004 matches as well
    g.cpu.dr[3] = 0x5003;
    g.cpu.setControl("dr7", dr7For(3, 3, 2));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => [e.bits, e.rip - CODE])).toEqual([
      [8, 0x0c],
      [8, 0x13],
      [8, 0x1b],
      [8, 0x23],
    ]);
  });

  it("lengths 1 and 2: only overlapping accesses match", () => {
    const g = guest("long", DATA64);
    g.cpu.dr[0] = 0x5004; // 1 byte: the dword store at 0x5002 and the byte store
    g.cpu.dr[2] = 0x4ffe; // 2 bytes 0x4ffe-0x4fff: the word store at 0x4fff
    g.cpu.setControl("dr7", dr7For(0, 1, 0) | dr7For(2, 1, 1));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => [e.bits, e.rip - CODE])).toEqual([
      [1, 0x0c],
      [1, 0x1b],
      [4, 0x23],
    ]);
  });

  it("real mode: a read/write breakpoint on a DS-relative byte", () => {
    // mov ax, 0x500; mov ds, ax; mov byte [0x10], 1; mov al, [0x10]; hlt
    const g = guest("real", hex("b8 00 05 8e d8 c6 06 10 00 01 a0 10 00 f4"));
    g.cpu.dr[0] = 0x5010;
    g.cpu.setControl("dr7", dr7For(0, 3, 0));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => [e.bits, e.rip])).toEqual([
      [1, 0x0a],
      [1, 0x0d],
    ]);
  });

  it("the guest programs DR0/DR7 with MOV DR: the next store traps, MOV from DR0 reads it back", () => {
    // mov eax, 0x10001; mov dr7, rax; mov eax, 0x5000; mov dr0, rax; mov byte [0x5000], 7; mov rbx, dr0; hlt
    const g = guest(
      "long",
      hex("b8 01 00 01 00 0f 23 f8 b8 00 50 00 00 0f 23 c0 c6 04 25 00 50 00 00 07 0f 21 c3 f4"),
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => [e.bits, e.rip - CODE])).toEqual([[1, 0x18]]);
    expect(Number(g.cpu.getGpr(3))).toBe(0x5000);
  });

  it("REP MOVSB stops after the iteration that wrote the watched byte, RF = 1 pushed", () => {
    // mov esi, 0x6000; mov edi, 0x5000; mov ecx, 16; cld; rep movsb; hlt
    const g = guest("long", hex("be 00 60 00 00 bf 00 50 00 00 b9 10 00 00 00 fc f3 a4 f4"));
    for (let i = 0; i < 16; i++) g.ram[0x6000 + i] = i + 1;
    g.cpu.dr[0] = 0x5008;
    g.cpu.setControl("dr7", dr7For(0, 1, 0));
    let rcxAtTrap = -1;
    g.hooks.event = (
      (orig) =>
      (...args: Parameters<typeof orig>) => {
        rcxAtTrap = Number(g.cpu.getGpr(1));
        return orig(...args);
      }
    )(g.hooks.event.bind(g.hooks));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => [e.bits, e.rip - CODE, e.rflags & RF])).toEqual([[1, 0x10, RF]]);
    // nine iterations done (0x5000-0x5008), seven left
    expect(rcxAtTrap).toBe(7);
    expect(Number(g.cpu.getGpr(1))).toBe(0);
    expect([...g.ram.subarray(0x5000, 0x5010)]).toEqual([...g.ram.subarray(0x6000, 0x6010)]);
  });

  it("I/O breakpoints need CR4.DE; LEN covers adjacent ports", () => {
    // mov al, 1; out 0x80, al; out 0x81, al; mov dx, 0x82; in al, dx; hlt
    const code = hex("b0 01 e6 80 e6 81 66 ba 82 00 ec f4");
    for (const [de, len, want] of [
      [false, 0, []],
      [true, 0, [4]],
      [true, 1, [4, 6]],
    ] as const) {
      const g = guest("long", code);
      if (de) g.cpu.setControl("cr4", g.cpu.getControl("cr4") | 8n);
      g.cpu.dr[2] = 0x80;
      g.cpu.setControl("dr7", dr7For(2, 2, len));
      expect(g.run()).toBe(StopReason.Halted);
      expect(g.events.map((e) => e.rip - CODE)).toEqual(want);
      expect(g.events.every((e) => e.bits === 4)).toBe(true);
    }
  });

  it("general detect: MOV DR faults with DR6.BD, clears DR7.GD, pushes RF = 1", () => {
    // mov rax, dr0; hlt: the default #DB stub logs and halts
    const g = guest("long", hex("0f 21 c0 f4"));
    g.ram.set([0xc7, 0x04, 0x25, 0x00, 0x90, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xf4], 0x8010);
    g.cpu.setControl("dr7", 0x2400n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(1);
    expect(g.events.map((e) => [e.vector, e.bits, e.rip - CODE, e.rflags & RF])).toEqual([[1, BD, 0, RF]]);
    expect(Number(g.cpu.getControl("dr6")) & BD).toBe(BD);
    expect(Number(g.cpu.getControl("dr7")) & 0x2000).toBe(0);
  });

  it("a fault-class exception pushes RF = 1", () => {
    const g = guest("long", hex("0f 0b"));
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(6);
    expect(g.events.map((e) => [e.vector, e.rflags & RF])).toEqual([[6, RF]]);
  });

  it("#DB as a VM exit: the qualification holds the bits, DR6 stays as it was", () => {
    const g = guest("long", DATA64, { exitOn: [1] });
    g.cpu.setControl("dr6", 0xffff0ff0n);
    g.cpu.dr[0] = 0x5000;
    g.cpu.setControl("dr7", dr7For(0, 1, 3));
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.hooks.lastExit).toMatchObject({ kind: "event", vector: 1 });
    expect(g.events.map((e) => [e.bits, e.rip - CODE])).toEqual([[1, 0x0c]]);
    expect(g.cpu.getControl("dr6")).toBe(0xffff0ff0n);
  });

  it("breakpoints disabled again: blocks run and nothing traps", () => {
    const g = guest("long", DATA64);
    g.cpu.dr[0] = 0x5000;
    g.cpu.setControl("dr7", dr7For(0, 1, 3));
    g.cpu.setControl("dr7", 0x400n);
    expect(g.cpu.dbgOn).toBe(false);
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events).toEqual([]);
  });
});
