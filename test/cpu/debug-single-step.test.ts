// RFLAGS.TF single-step (SDM 17.3.1.4): a trap-class #DB with DR6.BS after every instruction that
// began with TF = 1, none after the POPF that sets TF, held over a MOV SS shadow, cancelled by
// INT3 and by a SYSCALL whose SFMASK clears TF; in 64-bit, 32-bit protected and real mode, through
// blocks and the single-step decoder alike.
import { describe, expect, it } from "vitest";
import { Interpreter, StopReason } from "../../lib/cpu/index.js";
import { BS, debugGuest, RF, TF } from "./debug-support.js";
import { CODE, hex, loggedVector, SEL } from "./guest.js";

const decoders = [
  ["blocks", true],
  ["single-step decoder", false],
] as const;

describe.each(decoders)("TF single-step (%s)", (_name, decodeCache) => {
  const saved = Interpreter.defaultDecodeCache;
  const withDecoder = <T>(f: () => T): T => {
    Interpreter.defaultDecodeCache = decodeCache;
    try {
      return f();
    } finally {
      Interpreter.defaultDecodeCache = saved;
    }
  };

  it("64-bit: traps after each instruction that starts with TF set, not after the POPF setting it", () => {
    // pushfq; or qword [rsp], 0x100; popfq; nop; nop; pushfq; and qword [rsp], ~0x100; popfq; nop; hlt
    const g = withDecoder(() =>
      debugGuest("long", hex("9c 48 81 0c 24 00 01 00 00 9d 90 90 9c 48 81 24 24 ff fe ff ff 9d 90 f4")),
    );
    expect(g.run()).toBe(StopReason.Halted);
    // after nop, nop, pushfq, and, popfq (which clears TF but began with it set)
    expect(g.events.map((e) => e.rip - CODE)).toEqual([0x0b, 0x0c, 0x0d, 0x15, 0x16]);
    for (const e of g.events) {
      expect(e.vector).toBe(1);
      expect(e.bits).toBe(BS);
      expect(e.rflags & RF).toBe(0);
    }
    expect(Number(g.cpu.getControl("dr6")) & BS).toBe(BS);
    expect(g.cpu.getRipNumber()).toBe(CODE + 0x18);
  });

  it("32-bit protected mode: the same sequence", () => {
    // pushfd; or dword [esp], 0x100; popfd; nop; nop; pushfd; and dword [esp], ~0x100; popfd; nop; hlt
    const g = withDecoder(() =>
      debugGuest("prot32", hex("9c 81 0c 24 00 01 00 00 9d 90 90 9c 81 24 24 ff fe ff ff 9d 90 f4")),
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => e.rip - CODE)).toEqual([0x0a, 0x0b, 0x0c, 0x13, 0x14]);
    expect(g.events.every((e) => e.vector === 1 && e.bits === BS)).toBe(true);
  });

  it("real mode: the same sequence through the IVT", () => {
    // pushf; mov bp, sp; or word [bp], 0x100; popf; nop; nop; pushf; mov bp, sp; and word [bp], ~0x100; popf; nop; hlt
    const g = withDecoder(() =>
      debugGuest("real", hex("9c 89 e5 81 4e 00 00 01 9d 90 90 9c 89 e5 81 66 00 ff fe 9d 90 f4")),
    );
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => e.rip)).toEqual([0x0a, 0x0b, 0x0c, 0x0e, 0x13, 0x14]);
    expect(g.events.every((e) => e.vector === 1 && e.bits === BS)).toBe(true);
  });

  it("MOV SS holds the trap until after the next instruction", () => {
    // mov ax, 0x10; pushfq; or [rsp], TF; popfq; mov ss, ax; nop; nop; pushfq; and [rsp], ~TF; popfq; hlt
    const g = withDecoder(() =>
      debugGuest(
        "long",
        hex("66 b8 10 00 9c 48 81 0c 24 00 01 00 00 9d 8e d0 90 90 9c 48 81 24 24 ff fe ff ff 9d f4"),
      ),
    );
    expect(g.run()).toBe(StopReason.Halted);
    // none at 0x10 (after MOV SS): one #DB after the first NOP reports both steps
    expect(g.events.map((e) => e.rip - CODE)).toEqual([0x11, 0x12, 0x13, 0x1b, 0x1c]);
    expect(g.events.every((e) => e.bits === BS)).toBe(true);
  });

  it("INT3 with TF set: #BP's handler runs with TF clear and no #DB follows the INT3", () => {
    // pushfq; or [rsp], TF; popfq; int3; hlt
    const g = withDecoder(() => debugGuest("long", hex("9c 48 81 0c 24 00 01 00 00 9d cc f4")));
    expect(g.run()).toBe(StopReason.Halted);
    expect(g.events.map((e) => e.vector)).toEqual([3]);
    expect(loggedVector(g)).toBe(3);
    expect(g.cpu.getRflagsNumber() & TF).toBe(0);
  });

  it("SYSCALL: no #DB when SFMASK clears TF, a #DB at the LSTAR target when it does not", () => {
    const code = hex("9c 48 81 0c 24 00 01 00 00 9d 0f 05 f4");
    for (const mask of [TF, 0]) {
      // without the mask the kernel side runs with TF set: the first #DB ends the run as a VM exit
      const g = withDecoder(() => debugGuest("long", code, { exitOn: mask === TF ? [] : [1] }));
      const target = CODE + 0x100;
      g.ram[target] = 0xf4;
      g.cpu.setControl("efer", 0x501n);
      // SYSCALL loads CS from STAR[47:32] and SS from the next selector (the flat data segment)
      g.cpu.star = BigInt(SEL.code32) << 32n;
      g.cpu.lstar = target;
      g.cpu.sfmask = mask;
      expect(g.run()).toBe(mask === TF ? StopReason.Halted : StopReason.Exit);
      if (mask === TF) {
        expect(g.events).toEqual([]);
        expect(g.cpu.getRipNumber()).toBe(target + 1);
      } else {
        expect(g.events.map((e) => [e.vector, e.bits, e.rip])).toEqual([[1, BS, target]]);
      }
    }
  });

  it("REP MOVSB traps after every iteration, RIP at the instruction until the last", () => {
    // pushfq; or [rsp], TF; popfq; mov esi, 0x6000; mov edi, 0x5000; mov ecx, 3; rep movsb; ...
    const g = withDecoder(() =>
      debugGuest(
        "long",
        hex(
          "9c 48 81 0c 24 00 01 00 00 9d be 00 60 00 00 bf 00 50 00 00 b9 03 00 00 00 f3 a4 9c 48 81 24 24 ff fe ff ff 9d f4",
        ),
      ),
    );
    expect(g.run()).toBe(StopReason.Halted);
    const rep = CODE + 0x19;
    const at = g.events.filter((e) => e.rip === rep);
    // the trap after MOV ECX (RF = 0), then the first two iterations, which stop at the REP with
    // RF = 1 pushed; the last one moves past it
    expect(at.map((e) => e.rflags & RF)).toEqual([0, RF, RF]);
    const after = g.events.filter((e) => e.rip === rep + 2);
    expect(after.map((e) => e.rflags & RF)).toEqual([0]);
    expect([...g.ram.subarray(0x5000, 0x5003)]).toEqual([...g.ram.subarray(0x6000, 0x6003)]);
  });
});

describe("ICEBP (INT1)", () => {
  it("is a privileged software exception through vector 1 that leaves DR6 alone", () => {
    for (const mode of ["long", "prot32", "real"] as const) {
      const g = debugGuest(mode, hex("f1 90 f4"));
      g.cpu.setControl("dr6", 0xffff0ff0n);
      expect(g.run()).toBe(StopReason.Halted);
      expect(g.events.map((e) => [e.vector, e.bits])).toEqual([[1, undefined]]);
      // pushed RIP: after the INT1 (the handler returns to the NOP, then HLT)
      expect(g.cpu.getRipNumber()).toBe((mode === "real" ? 0 : CODE) + 3);
      expect(g.cpu.getControl("dr6")).toBe(0xffff0ff0n);
    }
  });
});
