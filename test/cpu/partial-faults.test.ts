// Faults in the middle of multi-access instructions (PUSHA/POPA, ENTER/LEAVE, RET, far-pointer
// loads) leave the architectural state as it was before the instruction: every stack slot is
// checked against SS's limit (and paging) before the first write, and registers change last.
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, type Guest, hex, loggedVector, makeGuest, r32, SEL } from "./guest.js";

const CS = 1;
const SS = 2;
const DS = 3;
const PD = 0x30000;
const PT = 0x31000;

function w32(ram: Uint8Array, a: number, v: number): void {
  ram[a] = v;
  ram[a + 1] = v >> 8;
  ram[a + 2] = v >> 16;
  ram[a + 3] = v >>> 24;
}

/** 32-bit protected-mode guest at CPL 3 (exceptions switch to the ring-0 stack from the TSS) */
function userGuest(code: string): Guest {
  const g = makeGuest("prot32", hex(code));
  g.cpu.setSegment(CS, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
  g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
  for (let r = 0; r < 8; r++) if (r !== 4) g.cpu.setGpr(r, BigInt(0x10101010 * (r + 1)));
  return g;
}
/** 4 KiB identity paging of the first 4 MiB (user, writable) with the pages in `holes` absent */
function page(g: Guest, holes: number[]): void {
  w32(g.ram, PD, PT | 7);
  for (let i = 0; i < 1024; i++) w32(g.ram, PT + 4 * i, holes.includes(i << 12) ? 0 : (i << 12) | 7);
  g.cpu.setControl("cr3", BigInt(PD));
  g.cpu.setControl("cr0", 0x80000011n);
}
/** the ring-0 frame of an exception taken at CPL 3: error code, EIP, ESP, SS */
function userFrame(g: Guest): { err: number; eip: number; esp: number } {
  const esp = Number(g.cpu.getGpr(4));
  return { err: r32(g.ram, esp), eip: r32(g.ram, esp + 4), esp: r32(g.ram, esp + 16) };
}
function gprs(g: Guest): bigint[] {
  const out: bigint[] = [];
  for (let r = 0; r < 8; r++) if (r !== 4) out.push(g.cpu.getGpr(r));
  return out;
}
const zeros = (n: number) => new Array<number>(n).fill(0);
/**
 * Runs `code` at CPL 3 with SS = (limit, ar) and ESP = `esp` after `setup`; expects #SS(0) at the
 * instruction with ESP as it was and no general register changed. Returns the guest.
 */
function expectSsFault(
  code: string,
  limit: number,
  ar: number,
  esp: number,
  setup?: (g: Guest) => void,
): Guest {
  const g = userGuest(code);
  g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit, ar });
  g.cpu.setGpr(4, BigInt(esp));
  setup?.(g);
  const before = gprs(g);
  expect(g.run()).toBe(StopReason.Halted);
  expect(loggedVector(g)).toBe(12);
  expect(userFrame(g)).toEqual({ err: 0, eip: CODE, esp });
  expect(gprs(g)).toEqual(before);
  return g;
}

describe("PUSHA / PUSHAD", () => {
  it("an expand-down SS with room for 4 of 8 slots is #SS(0) with nothing written and ESP kept", () => {
    // pushad ; hlt
    const ok = userGuest("60 f4");
    ok.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0x6fdf, ar: 0x40f7 });
    ok.cpu.setGpr(4, 0x7000n);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(userFrame(ok)).toEqual({ err: 0, eip: CODE + 1, esp: 0x6fe0 }); // HLT at CPL 3
    // EDI lowest ... EAX highest, the original ESP in the middle
    expect([r32(ok.ram, 0x6fe0), r32(ok.ram, 0x6fec), r32(ok.ram, 0x6ffc)]).toEqual([
      0x80808080, 0x7000, 0x10101010,
    ]);

    const bad = expectSsFault("60 f4", 0x6fef, 0x40f7, 0x7000);
    expect([...bad.ram.subarray(0x6fe0, 0x7000)]).toEqual(zeros(32));
  });
  it("on a 16-bit stack that wraps, every slot is checked, not just the first and the last", () => {
    // pusha (66 60 in 32-bit code) ; hlt — SP = 8: slots 6, 4, 2, 0, then FFFE, FFFC, FFFA, FFF8
    for (const [limit, vec] of [
      [0xffff, 13], // fits: runs on to HLT, which is #GP at CPL 3
      [0xfff9, 12], // the slot at FFFA..FFFB is beyond the limit, the last one (FFF8) is not
    ] as const) {
      const g = userGuest("66 60 f4");
      g.cpu.setSegment(SS, { selector: SEL.udata32, base: 0x50000n, limit, ar: 0x00f3 });
      g.cpu.setGpr(4, 0x8n);
      expect(g.run()).toBe(StopReason.Halted);
      expect(loggedVector(g)).toBe(vec);
      if (vec === 12) {
        expect(userFrame(g)).toEqual({ err: 0, eip: CODE, esp: 8 });
        expect([...g.ram.subarray(0x50000, 0x50008)]).toEqual(zeros(8));
      } else {
        expect(userFrame(g).esp).toBe(0xfff8);
        expect(r32(g.ram, 0x50004) & 0xffff).toBe(0x2020); // CX
        expect(r32(g.ram, 0x5fff8) & 0xffff).toBe(0x8080); // DI
      }
    }
  });
  it("a page fault on the lowest slot comes before any write", () => {
    const g = userGuest("60 f4");
    page(g, [0x70000]);
    g.cpu.setGpr(4, 0x71008n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(14);
    expect(userFrame(g)).toEqual({ err: 6, eip: CODE, esp: 0x71008 });
    expect(g.cpu.getControl("cr2")).toBe(0x70ffcn);
    expect([...g.ram.subarray(0x71000, 0x71008)]).toEqual(zeros(8));
  });
});

describe("POPA / POPAD", () => {
  it("a top slot beyond SS's limit is #SS(0) with no register changed", () => {
    // popad ; hlt with 28 of the 32 bytes inside the limit
    expectSsFault("61 f4", 0x701b, 0x40f3, 0x7000, (g) => {
      for (let i = 0; i < 32; i++) g.ram[0x7000 + i] = 0xa0 + i;
    });
  });
});

describe("ENTER", () => {
  it("a final stack pointer in an absent page is #PF before the push of EBP", () => {
    // enter 0x20, 0 ; hlt
    const bad = userGuest("c8 20 00 00 f4");
    page(bad, [0x70000]);
    bad.cpu.setGpr(4, 0x71010n);
    expect(bad.run()).toBe(StopReason.Halted);
    expect(loggedVector(bad)).toBe(14);
    expect(bad.cpu.getControl("cr2")).toBe(0x70fecn);
    expect(userFrame(bad)).toEqual({ err: 6, eip: CODE, esp: 0x71010 });
    expect(r32(bad.ram, 0x7100c)).toBe(0);
    expect(bad.cpu.getGpr(5)).toBe(0x60606060n);

    // enter 0x8, 0 ; hlt: the final ESP stays in the present page
    const ok = userGuest("c8 08 00 00 f4");
    page(ok, [0x70000]);
    ok.cpu.setGpr(4, 0x71010n);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(userFrame(ok)).toEqual({ err: 0, eip: CODE + 4, esp: 0x71004 });
    expect(r32(ok.ram, 0x7100c)).toBe(0x60606060);
    expect(ok.cpu.getGpr(5)).toBe(0x7100cn);
  });
  it("nesting level 3 copies two frame pointers; a final ESP at the limit of an expand-down SS is #SS(0)", () => {
    // enter 0x10, 3 ; hlt — pushes EBP, [EBP-4], [EBP-8], the new frame; then ESP -= 0x10
    const frames = (g: Guest) => {
      g.cpu.setGpr(5, 0x7100n);
      w32(g.ram, 0x70fc, 0x1111);
      w32(g.ram, 0x70f8, 0x2222);
    };
    const ok = userGuest("c8 10 00 03 f4");
    ok.cpu.setSegment(SS, { selector: SEL.udata32, base: 0n, limit: 0x6fdf, ar: 0x40f7 });
    ok.cpu.setGpr(4, 0x7000n);
    frames(ok);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(userFrame(ok)).toEqual({ err: 0, eip: CODE + 4, esp: 0x6fe0 });
    expect([r32(ok.ram, 0x6ffc), r32(ok.ram, 0x6ff8), r32(ok.ram, 0x6ff4), r32(ok.ram, 0x6ff0)]).toEqual([
      0x7100, 0x1111, 0x2222, 0x6ffc,
    ]);
    expect(ok.cpu.getGpr(5)).toBe(0x6ffcn);

    const bad = expectSsFault("c8 10 00 03 f4", 0x6fe0, 0x40f7, 0x7000, frames);
    expect([...bad.ram.subarray(0x6fe0, 0x7000)]).toEqual(zeros(32));
  });
});

describe("LEAVE, RET and POP r/m", () => {
  it("LEAVE with EBP at SS's limit is #SS(0) with ESP and EBP kept", () => {
    // leave ; hlt
    expectSsFault("c9 f4", 0x7fff, 0x40f3, 0x7000, (g) => g.cpu.setGpr(5, 0x7ffdn));
  });
  it("RET with the return address beyond SS's limit is #SS(0) with ESP kept", () => {
    // ret ; hlt
    expectSsFault("c3 f4", 0x7002, 0x40f3, 0x7000);
  });
  it("POP [ebx] with the popped slot beyond SS's limit is #SS(0); nothing is stored", () => {
    // pop dword [ebx] ; hlt
    const g = expectSsFault("8f 03 f4", 0x7002, 0x40f3, 0x7000, (k) => {
      k.cpu.setGpr(3, 0x6000n);
      w32(k.ram, 0x7000, 0xdeadbeef);
    });
    expect(r32(g.ram, 0x6000)).toBe(0);
  });
});

describe("far-pointer loads (LDS/LES/LSS)", () => {
  /** ring-0 guest with a not-present data descriptor at selector 0x50 and the pointer at 0x6000 */
  function ring0(code: string, sel: number): Guest {
    const g = makeGuest("prot32", hex(code));
    w32(g.ram, 0x1000 + 0x50, 0x0000ffff);
    w32(g.ram, 0x1000 + 0x54, 0x00cf1300);
    g.cpu.setGpr(3, 0x6000n);
    g.cpu.setGpr(0, 0xaaaan);
    w32(g.ram, 0x6000, 0x12345678);
    g.ram[0x6004] = sel & 0xff;
    g.ram[0x6005] = sel >> 8;
    return g;
  }
  function frame0(g: Guest): { err: number; eip: number } {
    const esp = Number(g.cpu.getGpr(4));
    return { err: r32(g.ram, esp), eip: r32(g.ram, esp + 4) };
  }
  it("LDS with a not-present segment is #NP(selector): EAX and DS unchanged", () => {
    // lds eax, [ebx] ; hlt
    const g = ring0("c5 03 f4", 0x50);
    const ds = g.cpu.getSegment(DS);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(11);
    expect(frame0(g)).toEqual({ err: 0x50, eip: CODE });
    expect(g.cpu.getGpr(0)).toBe(0xaaaan);
    expect(g.cpu.getSegment(DS)).toEqual(ds);
  });
  it("LSS with a code-segment selector is #GP(selector): ESP and SS unchanged; a data one loads both", () => {
    // lss esp, [ebx] ; hlt
    const g = ring0("0f b2 23 f4", SEL.code32);
    const ss = g.cpu.getSegment(SS);
    const esp = g.cpu.getGpr(4);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    // the handler ran on the unchanged stack
    expect(Number(g.cpu.getGpr(4))).toBe(Number(esp) - 16);
    expect(frame0(g)).toEqual({ err: SEL.code32, eip: CODE });
    expect(g.cpu.getSegment(SS)).toEqual(ss);

    const ok = ring0("0f b2 23 f4", SEL.data32);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(loggedVector(ok)).toBe(-1);
    expect(ok.cpu.getGpr(4)).toBe(0x12345678n);
    expect(ok.cpu.getSegment(SS).selector).toBe(SEL.data32);
  });
  it("LES with the selector word beyond the source segment's limit is #GP(0): EAX and ES unchanged", () => {
    // les eax, es:[ebx] ; hlt with ES ending inside the 6-byte pointer
    const g = ring0("26 c4 03 f4", SEL.data32);
    g.cpu.setSegment(0, { selector: SEL.data32, base: 0n, limit: 0x6004, ar: 0x4093 });
    const es = g.cpu.getSegment(0);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect(frame0(g)).toEqual({ err: 0, eip: CODE });
    expect(g.cpu.getGpr(0)).toBe(0xaaaan);
    expect(g.cpu.getSegment(0)).toEqual(es);
  });
});

describe("64-bit stack slots that cross the canonical boundary", () => {
  // the #SS handler runs on IST1, a good stack: RSP itself is the bad one
  const onIst = (code: number[]) => {
    const g = makeGuest("long", code);
    const IDT = 0x2000;
    const TSS = 0x3000;
    g.ram[IDT + 16 * 12 + 4] = 1;
    const ist = 0x80000;
    g.ram.set([ist & 0xff, (ist >> 8) & 0xff, (ist >> 16) & 0xff, 0, 0, 0, 0, 0], TSS + 0x24);
    return g;
  };
  const cases: [string, number[]][] = [
    // mov rsp, 0x7ffffffffffc ; pop rax | ret | pop qword [rbx]: 8 bytes from 2^47 - 4
    ["POP r64", [...hex("48 bc fc ff ff ff ff 7f 00 00"), 0x58, 0xf4]],
    ["RET", [...hex("48 bc fc ff ff ff ff 7f 00 00"), 0xc3, 0xf4]],
    ["POP r/m64", [...hex("48 bc fc ff ff ff ff 7f 00 00"), 0x8f, 0x03, 0xf4]],
    // mov rsp, 0x800000000004 ; push rax: the slot is 2^47 - 4 .. 2^47 + 3
    ["PUSH r64", [...hex("48 bc 04 00 00 00 00 80 00 00"), 0x50, 0xf4]],
  ];
  for (const [name, code] of cases) {
    it(`${name}: #SS(0), not #GP`, () => {
      const g = onIst(code);
      g.cpu.setGpr(3, 0x5000n);
      g.run();
      expect(loggedVector(g)).toBe(12);
      expect(r32(g.ram, 0x9004)).toBe(0);
    });
  }
});
