// Mode switches performed by guest code: real mode -> 32-bit protected mode -> long mode.
import { describe, expect, it } from "vitest";
import { Seg, StopReason } from "../../lib/cpu/index.js";
import { hex, makeGuest, r64 } from "./guest.js";

// tmp/modes.s: cli; lgdt; CR0.PE; ljmp 08:pm32; load data segs; out 'P'; CR4.PAE; CR3; EFER.LME;
// CR0.PG; ljmp 18:lm64; out 'L'; mov rax, imm64; mov [0x50000], rax; push rax; pop rbx; hlt
const MODE_SWITCH =
  hex(`fa 2e 0f 01 16 76 00 0f 20 c0 66 83 c8 01 0f 22 c0 66 ea 19 00 01 00 08 00 66 b8 10 00
 8e d8 8e c0 8e d0 bc 00 f0 08 00 b0 50 e6 e9 0f 20 e0 83 c8 20 0f 22 e0 b8 00 00 02 00 0f 22 d8 b9 80 00 00 c0
 0f 32 0d 00 01 00 00 0f 30 0f 20 c0 0d 00 00 00 80 0f 22 c0 ea 5d 00 01 00 18 00 b0 4c e6 e9 48 b8 f0 de bc 9a
 78 56 34 12 48 89 04 25 00 00 05 00 50 5b f4 5f 00 00 10 00 00`);

describe("mode switches", () => {
  it("real -> protected -> long mode", () => {
    const g = makeGuest("real", MODE_SWITCH);
    expect(g.cpu.mode64).toBe(false);
    expect(g.cpu.pm).toBe(false);
    expect(g.run()).toBe(StopReason.Halted);
    expect(String.fromCharCode(...g.out)).toBe("PL");
    expect(g.cpu.mode64).toBe(true);
    expect(g.cpu.getControl("efer") & 0x500n).toBe(0x500n);
    expect(g.cpu.getSegment(Seg.CS).selector).toBe(0x18);
    expect(r64(g.ram, 0x50000)).toBe(0x123456789abcdef0n);
    expect(g.cpu.getGpr(3)).toBe(0x123456789abcdef0n);
    expect(g.cpu.getGpr(4)).toBe(0x8f000n);
  });

  it("starts in the architectural reset state", async () => {
    const { Interpreter } = await import("../../lib/cpu/index.js");
    const cpu = new Interpreter();
    expect(cpu.getSegment(Seg.CS)).toEqual({ selector: 0xf000, base: 0xffff0000n, limit: 0xffff, ar: 0x9b });
    expect(cpu.getRip()).toBe(0xfff0n);
    expect(cpu.getRflags()).toBe(2n);
    expect(cpu.getControl("cr0")).toBe(0x60000010n);
    expect(() => cpu.run(1)).toThrow(/hooks/);
  });
});
