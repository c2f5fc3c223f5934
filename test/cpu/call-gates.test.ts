// Far CALL/JMP through 16/32-bit call gates: a ring-3 caller reaches ring 0 on the TSS stack with
// its parameters copied, RETF imm returns to ring 3 and releases them, and gate checks fault.
// 64-bit call gates in IA-32e mode: the stack switch to RSPn with a null SS, quadword pushes, RETFQ
// back, and the checks on the 16-byte gate and its 64-bit target.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, GDT, type Guest, hex, loggedVector, makeGuest, r32, r64, SEL, STACK_TOP } from "./guest.js";

const GATE = 0x50;
const OUT = 0x5000;
const RING0 = CODE + 0x100;

function w32(ram: Uint8Array, a: number, v: number): void {
  ram[a] = v;
  ram[a + 1] = v >> 8;
  ram[a + 2] = v >> 16;
  ram[a + 3] = v >> 24;
}
/** gate descriptor at GDT+GATE: type 0xC (32-bit) or 0x4 (16-bit), DPL, parameter count */
function gate(g: Guest, target: number, sel: number, type: number, dpl: number, params: number): void {
  w32(g.ram, GDT + GATE, (target & 0xffff) | (sel << 16));
  w32(g.ram, GDT + GATE + 4, (target & 0xffff0000) | 0x8000 | (dpl << 13) | (type << 8) | params);
}
/** ring-3 guest: CS/SS/DS/ES are the user segments, ESP = 0x7000 */
function user(code: number[]): Guest {
  const g = makeGuest("prot32", code);
  g.cpu.setSegment(1, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
  for (const s of [0, 2, 3])
    g.cpu.setSegment(s, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
  g.cpu.setGpr(4, 0x7000n);
  return g;
}
// push 0x1234abcd ; call far GATE|3:0 ; jmp $
const CALLER = hex("68 cd ab 34 12 9a 00 00 00 00 53 00 eb fe");
// mov eax, cs ; mov [OUT], eax ; mov eax, [esp+8] ; mov [OUT+4], eax ; mov eax, esp ;
// mov [OUT+8], eax ; mov eax, [esp+12] ; mov [OUT+12], eax ; retf 4
const RING0_CODE = hex(
  "8c c8 a3 00 50 00 00 8b 44 24 08 a3 04 50 00 00 89 e0 a3 08 50 00 00 8b 44 24 0c a3 0c 50 00 00 ca 04 00",
);

describe("call gates", () => {
  it("CALL from ring 3 through a 32-bit gate runs at ring 0 on the TSS stack and RETF returns", () => {
    const g = user(CALLER);
    g.ram.set(RING0_CODE, RING0);
    gate(g, RING0, SEL.code32, 0xc, 3, 1);
    expect(g.run(1000)).toBe(StopReason.Budget);
    const esp0 = STACK_TOP - 0x1000;
    // ring 0: CS = code32 with RPL 0, the parameter copied, ESP below SS, ESP, param, CS, EIP
    expect(r32(g.ram, OUT)).toBe(SEL.code32);
    expect(r32(g.ram, OUT + 4)).toBe(0x1234abcd);
    expect(r32(g.ram, OUT + 8)).toBe(esp0 - 20);
    expect(r32(g.ram, OUT + 12)).toBe(0x7000 - 4);
    expect(r32(g.ram, esp0 - 4)).toBe(SEL.udata32);
    expect(r32(g.ram, esp0 - 16)).toBe(SEL.ucode32);
    expect(r32(g.ram, esp0 - 20)).toBe(CODE + 12);
    // back at ring 3 at the JMP $, the parameter released from the user stack
    expect(g.cpu.getSegment(1).selector).toBe(SEL.ucode32);
    expect(g.cpu.getSegment(2).selector).toBe(SEL.udata32);
    expect(Number(g.cpu.getRip())).toBe(CODE + 12);
    expect(Number(g.cpu.getGpr(4))).toBe(0x7000);
  });
  it("a 16-bit gate pushes words and copies word parameters", () => {
    // push 0x1234abcd ; call far GATE|3:0 ; jmp $ ; ring 0: mov eax, esp ; mov [OUT], eax ; jmp $
    const g = user(CALLER);
    // a 16-bit gate holds a 16-bit offset: the target sits below 64 KiB
    g.ram.set(hex("89 e0 a3 00 50 00 00 eb fe"), 0x4000);
    gate(g, 0x4000, SEL.code32, 0x4, 3, 2);
    expect(g.run(100)).toBe(StopReason.Budget);
    const esp0 = STACK_TOP - 0x1000;
    // SS, SP, two word parameters, CS, IP: 6 words
    expect(r32(g.ram, OUT)).toBe(esp0 - 12);
    const w = (a: number) => g.ram[a] | (g.ram[a + 1] << 8);
    expect([w(esp0 - 2), w(esp0 - 4), w(esp0 - 6), w(esp0 - 8), w(esp0 - 10), w(esp0 - 12)]).toEqual([
      SEL.udata32,
      0x7000 - 4,
      0x1234,
      0xabcd,
      SEL.ucode32,
      (CODE + 12) & 0xffff,
    ]);
  });
  it("a gate whose DPL is below CPL is #GP(gate selector)", () => {
    const g = user(CALLER);
    gate(g, RING0, SEL.code32, 0xc, 0, 0);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    const esp = Number(g.cpu.getGpr(4));
    expect([r32(g.ram, esp), r32(g.ram, esp + 4), r32(g.ram, esp + 16)]).toEqual([
      GATE,
      CODE + 5,
      0x7000 - 4,
    ]);
  });
  it("JMP through a gate to a more privileged non-conforming segment is #GP(target selector)", () => {
    // push imm ; jmp far GATE|3:0
    const g = user(hex("68 cd ab 34 12 ea 00 00 00 00 53 00"));
    gate(g, RING0, SEL.code32, 0xc, 3, 0);
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(r32(g.ram, Number(g.cpu.getGpr(4)))).toBe(SEL.code32);
  });
  it("a not-present gate is #NP(gate selector); a task gate to a busy TSS is #GP(TSS selector)", () => {
    const np = user(CALLER);
    gate(np, RING0, SEL.code32, 0xc, 3, 0);
    np.ram[GDT + GATE + 5] &= 0x7f;
    expect(np.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(np)).toBe(11);
    expect(r32(np.ram, Number(np.cpu.getGpr(4)))).toBe(GATE);

    const task = user(CALLER);
    gate(task, 0, SEL.tss, 0x5, 3, 0);
    task.ram[GDT + SEL.tss + 5] = 0x8b;
    expect(task.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(task)).toBe(13);
    expect(r32(task.ram, Number(task.cpu.getGpr(4)))).toBe(SEL.tss);
  });
  it("a same-privilege CALL through a gate at ring 0 pushes CS:EIP on the current stack", () => {
    // call far GATE:0 ; (ring 0 target) mov eax, esp ; mov [OUT], eax ; hlt
    const g = makeGuest("prot32", hex("9a 00 00 00 00 50 00"));
    g.ram.set(hex("89 e0 a3 00 50 00 00 f4"), RING0);
    gate(g, RING0, SEL.code32, 0xc, 0, 3);
    const sp = Number(g.cpu.getGpr(4));
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(r32(g.ram, OUT)).toBe(sp - 8);
    expect([r32(g.ram, sp - 8), r32(g.ram, sp - 4)]).toEqual([CODE + 7, SEL.code32]);
  });
});

/** 64-bit gate at GDT+GATE (16 bytes: the GDT limit of the long-mode guest ends right after it) */
function gate64(g: Guest, target: number, sel: number, dpl: number, upperType = 0): void {
  w32(g.ram, GDT + GATE, (target & 0xffff) | (sel << 16));
  w32(g.ram, GDT + GATE + 4, (target & 0xffff0000) | 0x8000 | (dpl << 13) | (0xc << 8));
  w32(g.ram, GDT + GATE + 8, 0);
  w32(g.ram, GDT + GATE + 12, upperType << 8);
}
/** ring-3 64-bit guest: CS ucode64, SS/DS udata32, RSP = 0x7000; the far pointer at PTR names the gate */
const PTR = 0x5100;
function user64(code: number[]): Guest {
  const g = makeGuest("long", code);
  g.cpu.setSegment(1, { selector: SEL.ucode64, base: 0n, limit: 0xffffffff, ar: 0xa0fb });
  for (const s of [0, 2, 3])
    g.cpu.setSegment(s, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
  g.cpu.setGpr(4, 0x7000n);
  w32(g.ram, PTR, 0);
  g.ram[PTR + 4] = GATE | 3;
  g.ram[PTR + 5] = 0;
  return g;
}
// call far [PTR] ; jmp $
const CALLER64 = hex("ff 1c 25 00 51 00 00 eb fe");

describe("64-bit call gates", () => {
  it("CALL from ring 3 switches to RSP0 with a null SS, pushes SS, RSP, CS, RIP; RETFQ returns", () => {
    const g = user64(CALLER64);
    g.ram.set(hex("f4 48 cb"), RING0); // hlt ; retfq
    gate64(g, RING0, SEL.code64, 3);
    expect(g.run(1000)).toBe(StopReason.Halted);
    const rsp0 = STACK_TOP - 0x1000;
    expect(g.cpu.getSegment(1).selector).toBe(SEL.code64);
    expect(g.cpu.getSegment(2).selector).toBe(0);
    expect(Number(g.cpu.getGpr(4))).toBe(rsp0 - 32);
    expect([
      r64(g.ram, rsp0 - 8),
      r64(g.ram, rsp0 - 16),
      r64(g.ram, rsp0 - 24),
      r64(g.ram, rsp0 - 32),
    ]).toEqual([BigInt(SEL.udata32), 0x7000n, BigInt(SEL.ucode64), BigInt(CODE + 7)]);
    g.cpu.activity = 0;
    expect(g.run(100)).toBe(StopReason.Budget);
    expect(g.cpu.getSegment(1).selector).toBe(SEL.ucode64);
    expect(g.cpu.getSegment(2).selector).toBe(SEL.udata32);
    expect(Number(g.cpu.getGpr(4))).toBe(0x7000);
    expect(Number(g.cpu.getRip())).toBe(CODE + 7);
  });

  it("a same-privilege CALL from compatibility mode pushes CS and RIP as quadwords", () => {
    // 32-bit code in IA-32e mode: call far GATE:0 ; hlt
    const g = makeGuest("long", hex("9a 00 00 00 00 50 00 f4"));
    g.cpu.setSegment(1, { selector: SEL.code32, base: 0n, limit: 0xffffffff, ar: 0xc09b });
    g.ram.set(hex("f4"), RING0);
    gate64(g, RING0, SEL.code64, 0);
    const sp = Number(g.cpu.getGpr(4));
    expect(g.run(1000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getSegment(1).selector).toBe(SEL.code64);
    expect(Number(g.cpu.getRip())).toBe(RING0 + 1);
    expect(Number(g.cpu.getGpr(4))).toBe(sp - 16);
    expect([r64(g.ram, sp - 8), r64(g.ram, sp - 16)]).toEqual([BigInt(SEL.code32), BigInt(CODE + 7)]);
  });

  it("gate and target checks: JMP to more privilege, non-64-bit target, upper type, not present", () => {
    const cases: [string, number[], (g: Guest) => void, number, number][] = [
      // jmp far [PTR]
      ["JMP to ring 0", hex("ff 2c 25 00 51 00 00"), (g) => gate64(g, RING0, SEL.code64, 3), 13, SEL.code64],
      ["32-bit target", CALLER64, (g) => gate64(g, RING0, SEL.code32, 3), 13, SEL.code32],
      ["upper type not 0", CALLER64, (g) => gate64(g, RING0, SEL.code64, 3, 0xc), 13, GATE],
      ["gate DPL below CPL", CALLER64, (g) => gate64(g, RING0, SEL.code64, 0), 13, GATE],
      [
        "gate not present",
        CALLER64,
        (g) => {
          gate64(g, RING0, SEL.code64, 3);
          g.ram[GDT + GATE + 5] &= 0x7f;
        },
        11,
        GATE,
      ],
    ];
    for (const [name, code, setup, vector, error] of cases) {
      const g = user64(code);
      setup(g);
      expect(g.run(1000), name).toBe(StopReason.Halted);
      expect(loggedVector(g), name).toBe(vector);
      expect(r32(g.ram, Number(g.cpu.getGpr(4))), name).toBe(error);
      // nothing changed before the fault: the frame holds the far CALL/JMP's own RIP
      expect(r32(g.ram, Number(g.cpu.getGpr(4)) + 8), name).toBe(CODE);
    }
  });
});
