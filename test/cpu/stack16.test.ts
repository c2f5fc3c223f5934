// A 16-bit stack segment (SS.B = 0) under 32-bit code: every implicit stack access goes through SP,
// wraps within 64 KiB and leaves ESP's upper half alone; each slot is checked against SS's limit
// where it lands (#SS when it does not fit). Covers PUSH/POP of registers, immediates, memory and
// segment registers, PUSHA(D)/POPA(D), PUSHF(D)/POPF(D), ENTER/LEAVE, near and far CALL/RET,
// INT/IRET, exception delivery, inner-privilege stacks from the TSS and returns to 16-bit outer
// stacks; then the converse (16-bit code on a 32-bit stack uses ESP) and 64-bit mode (RSP always).
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, GDT, type Guest, hex, IDT, loggedVector, makeGuest, r32, SEL, TSS } from "./guest.js";

/** base of the 16-bit stack segments: offset o is at linear STK + o */
const STK = 0x40000;
const OUT = 0x5000;
const SEL16 = {
  /** ring-0 16-bit stack, limit 0xFFFF */
  stk16: 0x60,
  /** ring-3 16-bit stack, limit 0xFFFF */
  ustk16: 0x6b,
  /** ring-0 16-bit stack with limit 0xFFF */
  small16: 0x70,
  /** ring-0 16-bit expand-down stack, limit 0xFFF (valid offsets 0x1000..0xFFFF) */
  down16: 0x78,
  /** ring-0 16-bit code segment based at CODE */
  code16: 0x80,
} as const;

function w32(ram: Uint8Array, a: number, v: number): void {
  ram[a] = v;
  ram[a + 1] = v >> 8;
  ram[a + 2] = v >> 16;
  ram[a + 3] = v >> 24;
}
const r16 = (ram: Uint8Array, a: number): number => ram[a] | (ram[a + 1] << 8);

function desc(
  ram: Uint8Array,
  sel: number,
  base: number,
  limit: number,
  access: number,
  flags: number,
): void {
  const a = GDT + (sel & ~7);
  w32(ram, a, (limit & 0xffff) | ((base & 0xffff) << 16));
  w32(
    ram,
    a + 4,
    ((base >>> 16) & 0xff) | (access << 8) | (limit & 0xf0000) | (flags << 20) | (base & 0xff000000),
  );
}

interface Caught {
  vector: number;
  code: number | undefined;
}

/**
 * A protected-mode guest whose GDT also holds the 16-bit segments above. Exceptions whose vector
 * is in `catchVectors` stop the run (StopReason.Exit) with their error code in `caught`, before
 * delivery, so a fault's vector, code and the state it leaves can be checked exactly.
 */
function guest(code: number[], catchVectors: number[] = []): Guest & { caught: Caught[] } {
  const caught: Caught[] = [];
  const g = makeGuest("prot32", code, {
    event: (vector, errorCode) => {
      if (!catchVectors.includes(vector)) return false;
      caught.push({ vector, code: errorCode });
      return true;
    },
  });
  desc(g.ram, SEL16.stk16, STK, 0xffff, 0x93, 0);
  desc(g.ram, SEL16.ustk16, STK, 0xffff, 0xf3, 0);
  desc(g.ram, SEL16.small16, STK, 0xfff, 0x93, 0);
  desc(g.ram, SEL16.down16, STK, 0xfff, 0x97, 0);
  desc(g.ram, SEL16.code16, CODE, 0xffff, 0x9b, 0);
  g.cpu.setGdtr({ base: BigInt(GDT), limit: 0x87 });
  return Object.assign(g, { caught });
}
/** SS := one of the 16-bit stacks (the cache as MOV SS would load it) */
function ss16(g: Guest, sel: number = SEL16.stk16): void {
  const limit = sel === SEL16.small16 || sel === SEL16.down16 ? 0xfff : 0xffff;
  const access = sel === SEL16.down16 ? 0x97 : sel === SEL16.ustk16 ? 0xf3 : 0x93;
  g.cpu.setSegment(2, { selector: sel, base: BigInt(STK), limit, ar: access });
}
const esp = (g: Guest): number => Number(g.cpu.getGpr(4));
const gpr = (g: Guest, r: number): number => Number(g.cpu.getGpr(r));
/** dword at SS offset `o` of the 16-bit stacks */
const s32 = (g: Guest, o: number): number => r32(g.ram, STK + o);
const s16 = (g: Guest, o: number): number => r16(g.ram, STK + o);
/** a 32-bit interrupt gate for `vector` to `handler` in the ring-0 32-bit code segment */
function intGate(g: Guest, vector: number, handler: number, dpl = 0): void {
  w32(g.ram, IDT + 8 * vector, (handler & 0xffff) | (SEL.code32 << 16));
  w32(g.ram, IDT + 8 * vector + 4, (handler & 0xffff0000) | 0x8e00 | (dpl << 13));
}
/** ring 3: CS ucode32, DS/ES udata32 (flat), SS flat udata32 unless given */
function toUser(g: Guest): void {
  g.cpu.setSegment(1, { selector: SEL.ucode32, base: 0n, limit: 0xffffffff, ar: 0xc0fb });
  for (const s of [0, 2, 3])
    g.cpu.setSegment(s, { selector: SEL.udata32, base: 0n, limit: 0xffffffff, ar: 0xc0f3 });
}
const HANDLER = CODE + 0x100;
// mov [OUT], esp ; iretd
const STORE_ESP_IRET = hex("89 25 00 50 00 00 cf");

describe("16-bit stack segment under 32-bit code: PUSH/POP forms", () => {
  it("PUSHAD at ESP = 0x20000 writes at SS:0xFFFC down, pushes ESP whole, keeps ESP's upper half", () => {
    const g = guest(hex("60 f4"));
    ss16(g);
    const regs = [
      0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x20000, 0x66666666, 0x77777777, 0x88888888,
    ];
    regs.forEach((v, r) => {
      g.cpu.setGpr(r, BigInt(v));
    });
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(esp(g)).toBe(0x2ffe0);
    for (let i = 0; i < 8; i++) expect(s32(g, 0xfffc - 4 * i)).toBe(regs[i]);
    // nothing where a 32-bit ESP would have put it
    expect(r32(g.ram, STK + 0x1fffc)).toBe(0);
  });

  it("POPAD from SP 0xFFE0 wraps SP to 0 and skips the ESP slot", () => {
    const g = guest(hex("61 f4"));
    ss16(g);
    const vals = [
      0x88888888, 0x77777777, 0x66666666, 0xdeadbeef, 0x44444444, 0x33333333, 0x22222222, 0x11111111,
    ];
    vals.forEach((v, i) => {
      w32(g.ram, STK + 0xffe0 + 4 * i, v);
    });
    g.cpu.setGpr(4, 0x0002ffe0n);
    expect(g.run()).toBe(StopReason.Halted);
    expect([0, 1, 2, 3, 5, 6, 7].map((r) => gpr(g, r))).toEqual([
      0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x66666666, 0x77777777, 0x88888888,
    ]);
    expect(esp(g)).toBe(0x20000);
  });

  it("PUSHA/POPA (16-bit operands) wrap SP across 0 and restore only the low words", () => {
    // pushaw ; not eax ; not ecx ; not edx ; not ebx ; not ebp ; not esi ; not edi ; popaw ; hlt
    const g = guest(hex("66 60 f7 d0 f7 d1 f7 d2 f7 d3 f7 d5 f7 d6 f7 d7 66 61 f4"));
    ss16(g);
    const regs = [
      0x11110001, 0x22220002, 0x33330003, 0x44440004, 0xabcd0004, 0x66660006, 0x77770007, 0x88880008,
    ];
    regs.forEach((v, r) => {
      g.cpu.setGpr(r, BigInt(v));
    });
    g.ram.set(hex("ee ee"), STK + 0xfff2); // below the frame: untouched
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    // AX CX DX BX SP BP SI DI at SP-2 .. SP-16: 0x0002, 0x0000, 0xFFFE, ..., 0xFFF4
    expect([0x0002, 0x0000, 0xfffe, 0xfffc, 0xfffa, 0xfff8, 0xfff6, 0xfff4].map((o) => s16(g, o))).toEqual([
      0x0001, 0x0002, 0x0003, 0x0004, 0x0004, 0x0006, 0x0007, 0x0008,
    ]);
    expect(s16(g, 0xfff2)).toBe(0xeeee);
    expect(esp(g)).toBe(0xabcd0004);
    expect([0, 1, 2, 3, 5, 6, 7].map((r) => gpr(g, r))).toEqual([
      0xeeee0001, 0xdddd0002, 0xcccc0003, 0xbbbb0004, 0x99990006, 0x88880007, 0x77770008,
    ]);
  });

  it("PUSH r32/imm32/imm8/m32 and POP m32/r32 go through SP and wrap across 0", () => {
    // push eax ; push 0x12345678 ; push 0x7f ; push dword [0x5000] ; pop dword [0x5004] ;
    // pop ecx ; pop edx ; pop ebx ; hlt
    const g = guest(hex("50 68 78 56 34 12 6a 7f ff 35 00 50 00 00 8f 05 04 50 00 00 59 5a 5b f4"));
    ss16(g);
    g.cpu.setGpr(4, 0x12340008n);
    g.cpu.setGpr(0, 0xa5a5a5a5n);
    w32(g.ram, OUT, 0xcafebabe);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect([s32(g, 4), s32(g, 0), s32(g, 0xfffc), s32(g, 0xfff8)]).toEqual([
      0xa5a5a5a5, 0x12345678, 0x7f, 0xcafebabe,
    ]);
    expect(r32(g.ram, OUT + 4)).toBe(0xcafebabe);
    expect([gpr(g, 1), gpr(g, 2), gpr(g, 3)]).toEqual([0x7f, 0x12345678, 0xa5a5a5a5]);
    expect(esp(g)).toBe(0x12340008);
  });

  it.each([true, false])("a hot PUSH/CALL/RET/POP loop keeps to SP (blocks: %s)", (blocks) => {
    // mov ecx, 30000 ; L: push eax ; call F ; pop ebx ; dec ecx ; jnz L ; hlt ; F: ret
    const g = guest(hex("b9 30 75 00 00 50 e8 05 00 00 00 5b 49 75 f6 f4 c3"));
    g.cpu.decodeCache = blocks;
    g.cpu.jitThreshold = 4;
    ss16(g);
    // with ESP taken whole the first push would land far outside RAM
    g.cpu.setGpr(4, 0x12340000n);
    g.cpu.setGpr(0, 0x5a5a1234n);
    expect(g.run(1_000_000)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(gpr(g, 1)).toBe(0);
    expect(gpr(g, 3)).toBe(0x5a5a1234);
    expect(esp(g)).toBe(0x12340000);
    expect([s32(g, 0xfffc), s32(g, 0xfff8)]).toEqual([0x5a5a1234, CODE + 11]);
    if (blocks) expect(g.cpu.blocksBuilt).toBeGreaterThan(0);
  });

  it("PUSH/POP of segment registers (ES, DS, FS, GS) wrap SP", () => {
    // push ds ; pop es ; push fs ; pop gs ; push ds ; hlt
    const g = guest(hex("1e 07 0f a0 0f a9 1e f4"));
    ss16(g);
    g.cpu.setSegment(0, { selector: 0, base: 0n, limit: 0, ar: 0x10000 });
    g.cpu.setSegment(5, { selector: 0, base: 0n, limit: 0, ar: 0x10000 });
    g.cpu.setGpr(4, 0x77770000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(g.cpu.getSegment(0).selector).toBe(SEL.data32);
    expect(g.cpu.getSegment(5).selector).toBe(SEL.data32);
    expect(s16(g, 0xfffc)).toBe(SEL.data32);
    expect(esp(g)).toBe(0x7777fffc);
  });

  it("POP SS moves the stack pointer by the B bit of the stack it pops from", () => {
    // 16-bit SS -> 32-bit flat SS: pop ss ; push eax ; hlt
    const a = guest(hex("17 50 f4"));
    ss16(a);
    a.cpu.setGpr(4, 0x0001fffcn);
    a.cpu.setGpr(0, 0x600dd00dn);
    w32(a.ram, STK + 0xfffc, SEL.data32);
    expect(a.run()).toBe(StopReason.Halted);
    expect(loggedVector(a)).toBe(-1);
    expect(a.cpu.getSegment(2).selector).toBe(SEL.data32);
    // SP wrapped to 0 (ESP 0x10000), then a 32-bit push at flat 0xFFFC
    expect(esp(a)).toBe(0xfffc);
    expect(r32(a.ram, 0xfffc)).toBe(0x600dd00d);

    // 32-bit flat SS -> 16-bit SS: pop ss (16-bit operand) ; push ax ; hlt
    const b = guest(hex("66 17 66 50 f4"));
    b.cpu.setGpr(4, 0xfffen);
    b.cpu.setGpr(0, 0xbeefn);
    b.ram[0xfffe] = SEL16.stk16;
    expect(b.run()).toBe(StopReason.Halted);
    expect(loggedVector(b)).toBe(-1);
    expect(b.cpu.getSegment(2).selector).toBe(SEL16.stk16);
    // ESP moved by 2 as a 32-bit stack pointer (0x10000), then the push used SP = 0
    expect(esp(b)).toBe(0x1fffe);
    expect(s16(b, 0xfffe)).toBe(0xbeef);
  });

  it("PUSHFD/POPFD wrap SP and keep ESP's upper half", () => {
    // pushfd ; popfd ; pushfd ; hlt with SP = 2: the dword at 0xFFFE would cross the limit, so
    // start at SP = 0
    const g = guest(hex("9c 9d 9c f4"));
    ss16(g);
    g.cpu.setGpr(4, 0x99990000n);
    g.cpu.setRflags(0x8d7n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(s32(g, 0xfffc)).toBe(0x8d7);
    expect(esp(g)).toBe(0x9999fffc);
    expect(Number(g.cpu.getRflags()) & 0x8d7).toBe(0x8d7);
  });
});

describe("16-bit stack segment: ENTER/LEAVE, CALL/RET", () => {
  it("ENTER 8,0 sets BP and SP only; LEAVE restores them", () => {
    // enter 8, 0 ; mov [OUT], esp ; mov [OUT+4], ebp ; leave ; hlt
    const g = guest(hex("c8 08 00 00 89 25 00 50 00 00 89 2d 04 50 00 00 c9 f4"));
    ss16(g);
    g.cpu.setGpr(4, 0x55550010n);
    g.cpu.setGpr(5, 0xaaaa1234n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(s32(g, 0xc)).toBe(0xaaaa1234);
    expect([r32(g.ram, OUT), r32(g.ram, OUT + 4)]).toEqual([0x55550004, 0xaaaa000c]);
    expect([esp(g), gpr(g, 5)]).toEqual([0x55550010, 0xaaaa1234]);
  });

  it("ENTER 4,2 copies the enclosing frame pointer through BP and wraps SP", () => {
    const g = guest(hex("c8 04 00 02 f4"));
    ss16(g);
    g.cpu.setGpr(4, 0x55550004n);
    g.cpu.setGpr(5, 0xaaaa0100n);
    w32(g.ram, STK + 0xfc, 0x11112222);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    // EBP at SP 0, the copied frame pointer at 0xFFFC, the new frame (SP 0) at 0xFFF8
    expect([s32(g, 0), s32(g, 0xfffc), s32(g, 0xfff8)]).toEqual([0xaaaa0100, 0x11112222, 0]);
    expect([esp(g), gpr(g, 5)]).toEqual([0x5555fff4, 0xaaaa0000]);
  });

  it("near CALL pushes at SP, RET imm16 adds within 16 bits", () => {
    // call F ; hlt ; F: mov [OUT], esp ; ret 8
    const g = guest(hex("e8 01 00 00 00 f4 89 25 00 50 00 00 c2 08 00"));
    ss16(g);
    g.cpu.setGpr(4, 0x33330000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(r32(g.ram, OUT)).toBe(0x3333fffc);
    expect(s32(g, 0xfffc)).toBe(CODE + 5);
    expect(esp(g)).toBe(0x33330008);
  });

  it("CALL r32 and CALL m32 push at SP", () => {
    // call eax ; call [0x5008] ; hlt -- both targets: ret
    const g = guest(hex("ff d0 ff 15 08 50 00 00 f4"));
    ss16(g);
    g.ram[CODE + 0x40] = 0xc3;
    g.cpu.setGpr(0, BigInt(CODE + 0x40));
    w32(g.ram, OUT + 8, CODE + 0x40);
    g.cpu.setGpr(4, 0x33330000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(s32(g, 0xfffc)).toBe(CODE + 8);
    expect(esp(g)).toBe(0x33330000);
  });

  it("far CALL/RETF imm at the same privilege: CS and EIP each checked where they land", () => {
    // call far 0x08:CODE+0x100 ; hlt ; at CODE+0x100: mov [OUT], esp ; retf 4
    const g = guest(hex("9a 00 01 01 00 08 00 f4"));
    ss16(g);
    g.ram.set(hex("89 25 00 50 00 00 ca 04 00"), CODE + 0x100);
    // CS at SP 0..3, EIP at 0xFFFC: the pair straddles the wrap, each slot within the limit
    g.cpu.setGpr(4, 0x44440004n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect([s32(g, 0), s32(g, 0xfffc)]).toEqual([SEL.code32, CODE + 7]);
    expect(r32(g.ram, OUT)).toBe(0x4444fffc);
    expect(esp(g)).toBe(0x44440008);
    expect(Number(g.cpu.getRip())).toBe(CODE + 8);
  });
});

describe("16-bit stack segment: INT/IRET and exceptions", () => {
  it("INT n and IRETD at the same privilege push and pop through SP", () => {
    const g = guest(hex("cd 1f f4"));
    ss16(g);
    intGate(g, 0x1f, HANDLER);
    g.ram.set(STORE_ESP_IRET, HANDLER);
    g.cpu.setGpr(4, 0x66660004n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    // EFLAGS at SP 0, CS at 0xFFFC, EIP at 0xFFF8
    expect([s32(g, 0), s32(g, 0xfffc), s32(g, 0xfff8)]).toEqual([2, SEL.code32, CODE + 2]);
    expect(r32(g.ram, OUT)).toBe(0x6666fff8);
    expect(esp(g)).toBe(0x66660004);
  });

  it("an exception with an error code goes on the 16-bit stack (#GP from INT beyond the IDT)", () => {
    const g = guest(hex("cd 80"));
    ss16(g);
    g.cpu.setGpr(4, 0x66660008n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(13);
    expect([s32(g, 4), s32(g, 0), s32(g, 0xfffc), s32(g, 0xfff8)]).toEqual([
      0x10002,
      SEL.code32,
      CODE,
      0x80 * 8 + 2,
    ]);
    expect(esp(g)).toBe(0x6666fff8);
  });

  it("an interrupt from ring 3 switches to a 16-bit SS0: ESP from the TSS, the frame below its SP", () => {
    // ring 3: int 0x1f ; jmp $   (handler at ring 0: mov [OUT], esp ; iretd)
    const g = guest(hex("cd 1f eb fe"));
    toUser(g);
    g.cpu.setGpr(4, 0x7000n);
    intGate(g, 0x1f, HANDLER, 3);
    g.ram.set(STORE_ESP_IRET, HANDLER);
    w32(g.ram, TSS + 4, 0xbeef0010);
    w32(g.ram, TSS + 8, SEL16.stk16);
    expect(g.run(100)).toBe(StopReason.Budget);
    // SS, ESP, EFLAGS, CS, EIP at 0x0C, 0x08, 0x04, 0x00, 0xFFFC; ESP = the TSS's upper half | SP
    expect([s32(g, 0xc), s32(g, 8), s32(g, 4), s32(g, 0), s32(g, 0xfffc)]).toEqual([
      SEL.udata32,
      0x7000,
      2,
      SEL.ucode32,
      CODE + 2,
    ]);
    expect(r32(g.ram, OUT)).toBe(0xbeeffffc);
    // IRETD back to ring 3's flat stack
    expect(g.cpu.getSegment(2).selector).toBe(SEL.udata32);
    expect(esp(g)).toBe(0x7000);
    expect(Number(g.cpu.getRip())).toBe(CODE + 2);
  });

  it("an exception at ring 3 is delivered on a 16-bit SS0 (UD2)", () => {
    const g = guest(hex("0f 0b"));
    toUser(g);
    g.cpu.setGpr(4, 0x7000n);
    w32(g.ram, TSS + 4, 0x00030008);
    w32(g.ram, TSS + 8, SEL16.stk16);
    expect(g.run(100)).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(6);
    expect(g.cpu.getSegment(2).selector).toBe(SEL16.stk16);
    expect(esp(g)).toBe(0x0003fff4);
    expect([s32(g, 4), s32(g, 0), s32(g, 0xfffc), s32(g, 0xfff8), s32(g, 0xfff4)]).toEqual([
      SEL.udata32,
      0x7000,
      0x10002,
      SEL.ucode32,
      CODE,
    ]);
  });

  it("IRETD/RETF to ring 3 keep the kernel ESP's bits 16-31 on a 16-bit SS; a 32-bit SS takes ESP whole", () => {
    // SS base 0x40000 - 0x10000: the frame at ESP 0x10100 lies at linear 0x40100
    const run = (insn: number[], frame: number[], ss: number) => {
      const g = guest(insn);
      desc(g.ram, 0x88, STK - 0x10000, 0xfffff, 0x93, 0xc);
      g.cpu.setSegment(2, { selector: 0x88, base: BigInt(STK - 0x10000), limit: 0xffffffff, ar: 0xc093 });
      g.cpu.setGpr(4, 0x10100n);
      g.ram.set(hex("eb fe"), CODE + 0x20);
      frame.forEach((v, i) => {
        w32(g.ram, STK + 0x100 + 4 * i, v);
      });
      expect(g.run(10)).toBe(StopReason.Budget);
      expect(g.cpu.getSegment(2).selector).toBe(ss);
      expect(Number(g.cpu.getRip())).toBe(CODE + 0x20);
      return esp(g);
    };
    // iretd: EIP, CS, EFLAGS, ESP, SS
    expect(run(hex("cf"), [CODE + 0x20, SEL.ucode32, 2, 0x12345678, SEL16.ustk16], SEL16.ustk16)).toBe(
      0x15678,
    );
    expect(run(hex("cf"), [CODE + 0x20, SEL.ucode32, 2, 0x12345678, SEL.udata32], SEL.udata32)).toBe(
      0x12345678,
    );
    // retf 8: EIP, CS, 8 bytes of parameters, ESP, SS; the parameters released on the outer stack too
    const retf = hex("ca 08 00");
    expect(run(retf, [CODE + 0x20, SEL.ucode32, 0, 0, 0x1234fffc, SEL16.ustk16], SEL16.ustk16)).toBe(0x10004);
    expect(run(retf, [CODE + 0x20, SEL.ucode32, 0, 0, 0x1234fffc, SEL.udata32], SEL.udata32)).toBe(
      0x12350004,
    );
  });

  it("IRETQ from 64-bit ring 0 to compatibility-mode ring 3 on a 16-bit SS loads SP only", () => {
    // iretq ; (ring 3, 32-bit code at CODE+0x20) push eax ; jmp $
    const g = makeGuest("long", hex("48 cf"));
    desc(g.ram, SEL16.ustk16, STK, 0xffff, 0xf3, 0);
    g.cpu.setGdtr({ base: BigInt(GDT), limit: 0x87 });
    g.ram.set(hex("50 eb fe"), CODE + 0x20);
    const frame = [CODE + 0x20, SEL.ucode32, 2, 0x12345678, SEL16.ustk16];
    frame.forEach((v, i) => {
      w32(g.ram, 0x54000 + 8 * i, v);
    });
    g.cpu.setGpr(4, 0x54000n);
    g.cpu.setGpr(0, 0xfeedfacen);
    expect(g.run(10)).toBe(StopReason.Budget);
    expect(g.cpu.getSegment(2).selector).toBe(SEL16.ustk16);
    // RSP 0x54000 with its low 16 bits from the frame (0x5678), then a push through SP
    expect(esp(g)).toBe(0x55674);
    expect(s32(g, 0x5674)).toBe(0xfeedface);
  });

  it("a call gate from ring 3 to a 16-bit SS0: ESP from the TSS, parameters copied; RETF 4 returns", () => {
    // push 0x1234abcd ; call far 0x50|3:0 ; jmp $   (ring 0: mov [OUT], esp ; retf 4)
    const g = guest(hex("68 cd ab 34 12 9a 00 00 00 00 53 00 eb fe"));
    toUser(g);
    g.cpu.setGpr(4, 0x7000n);
    w32(g.ram, GDT + 0x50, (HANDLER & 0xffff) | (SEL.code32 << 16));
    w32(g.ram, GDT + 0x54, (HANDLER & 0xffff0000) | 0xec00 | 1);
    g.ram.set(hex("89 25 00 50 00 00 ca 04 00"), HANDLER);
    w32(g.ram, TSS + 4, 0xbeef0008);
    w32(g.ram, TSS + 8, SEL16.stk16);
    expect(g.run(100)).toBe(StopReason.Budget);
    // SS, ESP, the parameter, CS, EIP at 0x04, 0x00, 0xFFFC, 0xFFF8, 0xFFF4
    expect([s32(g, 4), s32(g, 0), s32(g, 0xfffc), s32(g, 0xfff8), s32(g, 0xfff4)]).toEqual([
      SEL.udata32,
      0x7000 - 4,
      0x1234abcd,
      SEL.ucode32,
      CODE + 12,
    ]);
    expect(r32(g.ram, OUT)).toBe(0xbeeffff4);
    expect(g.cpu.getSegment(2).selector).toBe(SEL.udata32);
    expect(esp(g)).toBe(0x7000);
    expect(Number(g.cpu.getRip())).toBe(CODE + 12);
  });
});

describe("16-bit stack segment: #SS where a slot does not fit", () => {
  it("PUSH of a dword at SP 2 crosses the 64 KiB limit: #SS(0), nothing written, ESP unchanged", () => {
    const g = guest(hex("50 f4"), [12]);
    ss16(g);
    g.cpu.setGpr(4, 0x12340002n);
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.caught).toEqual([{ vector: 12, code: 0 }]);
    expect(esp(g)).toBe(0x12340002);
    expect([s16(g, 0), s16(g, 0xfffe)]).toEqual([0, 0]);
    expect(Number(g.cpu.getRip())).toBe(CODE);
  });

  it("far CALL whose CS slot crosses the limit is #SS(0) before anything is pushed", () => {
    const g = guest(hex("9a 00 01 01 00 08 00 f4"), [12]);
    ss16(g);
    g.cpu.setGpr(4, 0x44440002n);
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.caught).toEqual([{ vector: 12, code: 0 }]);
    expect(esp(g)).toBe(0x44440002);
    expect(s32(g, 0xfffc)).toBe(0);
  });

  it("PUSHAD on an expand-down 16-bit stack below its limit: #SS(0), nothing written", () => {
    const g = guest(hex("60 f4"), [12]);
    ss16(g, SEL16.down16);
    g.cpu.setGpr(4, 0x00011010n);
    expect(g.run()).toBe(StopReason.Exit);
    expect(g.caught).toEqual([{ vector: 12, code: 0 }]);
    expect(esp(g)).toBe(0x00011010);
    expect(s32(g, 0x100c)).toBe(0);
    // with room (SP 0x1020) it runs
    const ok = guest(hex("60 f4"), [12]);
    ss16(ok, SEL16.down16);
    ok.cpu.setGpr(4, 0x00011020n);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(ok.caught).toEqual([]);
    expect(esp(ok)).toBe(0x00011000);
    expect(s32(ok, 0x100c)).toBe(0x00011020);
  });

  it("INT n without room on the current stack is #SS(0); an exception's is #SS(1) (EXT)", () => {
    const soft = guest(hex("cd 1f f4"), [12]);
    ss16(soft, SEL16.down16);
    intGate(soft, 0x1f, HANDLER);
    soft.cpu.setGpr(4, 0x1008n);
    expect(soft.run()).toBe(StopReason.Exit);
    expect(soft.caught).toEqual([{ vector: 12, code: 0 }]);
    expect(esp(soft)).toBe(0x1008);
    expect(s32(soft, 0x1004)).toBe(0);

    const ext = guest(hex("0f 0b"), [12]);
    ss16(ext, SEL16.small16);
    ext.cpu.setGpr(4, 0x1004n);
    expect(ext.run()).toBe(StopReason.Exit);
    expect(ext.caught).toEqual([{ vector: 12, code: 1 }]);
    expect(esp(ext)).toBe(0x1004);
  });

  it("a stack switch to a 16-bit SS0 without room is #SS(SS0 selector)", () => {
    // the interrupt from ring 3, and the call gate
    const intr = guest(hex("cd 1f eb fe"), [12]);
    toUser(intr);
    intr.cpu.setGpr(4, 0x7000n);
    intGate(intr, 0x1f, HANDLER, 3);
    w32(intr.ram, TSS + 4, 0x2000);
    w32(intr.ram, TSS + 8, SEL16.small16);
    expect(intr.run(100)).toBe(StopReason.Exit);
    expect(intr.caught).toEqual([{ vector: 12, code: SEL16.small16 }]);
    expect(intr.cpu.getSegment(2).selector).toBe(SEL.udata32);
    expect(esp(intr)).toBe(0x7000);

    const gate = guest(hex("9a 00 00 00 00 53 00 eb fe"), [12]);
    toUser(gate);
    gate.cpu.setGpr(4, 0x7000n);
    w32(gate.ram, GDT + 0x50, (HANDLER & 0xffff) | (SEL.code32 << 16));
    w32(gate.ram, GDT + 0x54, (HANDLER & 0xffff0000) | 0xec00);
    w32(gate.ram, TSS + 4, 0x1008);
    w32(gate.ram, TSS + 8, SEL16.small16);
    expect(gate.run(100)).toBe(StopReason.Exit);
    expect(gate.caught).toEqual([{ vector: 12, code: SEL16.small16 }]);
    expect(esp(gate)).toBe(0x7000);
  });
});

describe("stack width follows SS.B, not the code size", () => {
  it("16-bit code on a 32-bit stack uses ESP", () => {
    // (16-bit code) push ax ; push 0x1234 ; call F ; hlt ; F: ret
    const g = guest(hex("50 68 34 12 e8 01 00 f4 c3"));
    g.cpu.setSegment(1, { selector: SEL16.code16, base: BigInt(CODE), limit: 0xffff, ar: 0x9b });
    g.cpu.setRip(0n);
    g.cpu.setGpr(4, 0x00012000n);
    g.cpu.setGpr(0, 0xbeefn);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(-1);
    expect(esp(g)).toBe(0x00011ffc);
    expect([r16(g.ram, 0x11ffe), r16(g.ram, 0x11ffc), r16(g.ram, 0x11ffa)]).toEqual([0xbeef, 0x1234, 7]);
  });

  it("real mode with a big (B = 1) cached SS: INT 3 pushes at ESP", () => {
    const g = makeGuest("real", hex("cc"));
    g.cpu.setSegment(2, { selector: 0, base: 0n, limit: 0xffffffff, ar: 0x4093 });
    g.cpu.setGpr(4, 0x00012000n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(loggedVector(g)).toBe(3);
    expect(esp(g)).toBe(0x00011ffa);
    expect([r16(g.ram, 0x11ffe), r16(g.ram, 0x11ffc), r16(g.ram, 0x11ffa)]).toEqual([2, CODE >> 4, 1]);
  });

  it("real mode: INT at SP 1 is #SS (FLAGS would cross the 64 KiB limit); at SP 2 the frame wraps", () => {
    const bad = makeGuest("real", hex("cc"), { event: (v) => v === 12 });
    bad.cpu.setGpr(4, 1n);
    expect(bad.run()).toBe(StopReason.Exit);
    expect(bad.hooks.lastExit).toMatchObject({ kind: "event", vector: 12 });
    expect(esp(bad)).toBe(1);

    const ok = makeGuest("real", hex("cc"));
    ok.cpu.setGpr(4, 0xabcd0002n);
    expect(ok.run()).toBe(StopReason.Halted);
    expect(loggedVector(ok)).toBe(3);
    expect(esp(ok)).toBe(0xabcdfffc);
    expect([r16(ok.ram, 0), r16(ok.ram, 0xfffe), r16(ok.ram, 0xfffc)]).toEqual([2, CODE >> 4, 1]);
  });

  it("64-bit mode ignores SS.B: PUSH moves all of RSP", () => {
    const g = makeGuest("long", hex("50 f4"));
    g.cpu.setSegment(2, { selector: SEL.data16, base: 0n, limit: 0xffff, ar: 0x93 });
    g.cpu.setGpr(4, 0x80000n);
    g.cpu.setGpr(0, 0x1122334455667788n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(esp(g)).toBe(0x7fff8);
    expect(r32(g.ram, 0x7fff8)).toBe(0x55667788);
  });

  it("compatibility mode honours SS.B: PUSH EAX on a 16-bit SS uses SP", () => {
    const g = makeGuest("long", hex("50 f4"));
    g.cpu.setSegment(1, { selector: SEL.code32, base: 0n, limit: 0xffffffff, ar: 0xc09b });
    g.cpu.setSegment(2, { selector: SEL.data16, base: 0n, limit: 0xffff, ar: 0x93 });
    g.cpu.setGpr(4, 0x30000n);
    g.cpu.setGpr(0, 0x12345678n);
    expect(g.run()).toBe(StopReason.Halted);
    expect(esp(g)).toBe(0x3fffc);
    expect(r32(g.ram, 0xfffc)).toBe(0x12345678);
  });
});
