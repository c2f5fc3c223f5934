// The block engine's fast ops for kernel code against the single-step executor: CALL/RET (near,
// with an immediate), PUSH/POP, LEAVE, CALL/JMP through registers and memory, MOVSXD, NEG/NOT,
// IMUL, BT*, the 8-bit ALU/TEST/MOV forms, MOV m, imm, shifts and rotates, hint NOPs, and loads,
// stores and ALU ops with an FS/GS override in 64-bit mode. Each program loops so that its blocks
// run interpreted ("blocks") and compiled on their first run ("compiled"); random registers, data
// and stack pointers (page-crossing, unmapped, MMIO, non-canonical, 16-bit stacks that wrap) must
// give single-stepping's registers, flags, memory, instruction count and fault.
//
// Programs assembled with binutils (as --64/--32, Intel syntax); the source is beside each.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopReason } from "../../lib/cpu/index.js";
import { CODE, hex, STACK_TOP } from "./guest.js";
import { agree, genericOps, run, type Setup } from "./support/block-agree.js";

/** data the programs address through RSI (64-bit and 32-bit) */
const DATA = 0x60000;
/** the same in real mode (DS base 0) */
const DATA16 = 0x7000;

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = fc.uint8Array({ minLength: 0x100, maxLength: 0x100 });
const le64 = (v: number | bigint): number[] => {
  const b = BigInt.asUintN(64, BigInt(v));
  return Array.from({ length: 8 }, (_, k) => Number((b >> BigInt(8 * k)) & 0xffn));
};
const RUNS = { numRuns: 25 };

describe("64-bit: CALL, RET, PUSH, POP, LEAVE, indirect CALL/JMP", () => {
  // mov ecx, 24 ; L: push rbx ; push r12 ; call f1 ; lea rax, [rip+f2] ; call rax ;
  // call [rsi] ; push rdx ; call f3 ; lea rax, [rip+after] ; jmp rax ; after: jmp [rsi+8] ;
  // back: pop r12 ; pop rbx ; add rbx, r12 ; dec ecx ; jnz L ; hlt
  // f1: push rbp ; mov rbp, rsp ; sub rsp, 16 ; mov [rbp-8], rdi ; add rdi, [rbp-8] ; pop r13 ;
  //     push r13 ; leave ; ret
  // f2: pop r8 ; push r8 ; xor r8, rbx ; ret        f3: ret 8
  const code = hex(
    `b9 18 00 00 00 53 41 54 e8 28 00 00 00 48 8d 05 37 00 00 00 ff d0 ff 16 52 e8 35 00 00 00
     48 8d 05 02 00 00 00 ff e0 ff 66 08 41 5c 5b 4c 01 e3 ff c9 75 d1 f4 55 48 89 e5 48 83 ec 10
     48 89 7d f8 48 03 7d f8 41 5d 41 55 c9 c3 41 58 41 50 49 31 d8 c3 c2 08 00`,
  );
  const F2 = CODE + 0x4b;
  const BACK = CODE + 0x2a;
  const setup = (rsp: bigint, slot: bigint, r: bigint[]): Setup => {
    const data = new Uint8Array(0x1000);
    data.set([...le64(slot), ...le64(BACK)]);
    return {
      at: DATA,
      data,
      regs: [
        [6, BigInt(DATA)],
        [4, rsp],
        [3, r[0]],
        [12, r[1]],
        [7, r[2]],
        [2, r[3]],
      ],
    };
  };

  it("runs with no generic op but the HLT", () => {
    const s = setup(BigInt(STACK_TOP), BigInt(F2), [1n, 2n, 3n, 4n]);
    expect(run("long", code, "single-step", s).stop).toBe(StopReason.Halted);
    expect(genericOps("long", code, s)).toEqual([0xf4]);
  });

  it("random registers, flat and page-crossing stacks: single-stepping's state", () => {
    fc.assert(
      fc.property(
        fc.array(u64, { minLength: 4, maxLength: 4 }),
        fc.constantFrom(0n, 4n, 8n, 0x803n),
        (r, d) => {
          const o = agree("long", code, setup(BigInt(STACK_TOP) + d, BigInt(F2), r));
          expect(o.stop).toBe(StopReason.Halted);
        },
      ),
      RUNS,
    );
  });

  it("stack faults and bad targets: #PF on an unmapped stack page, #SS for a non-canonical RSP, #GP for a non-canonical target, MMIO stacks", () => {
    const cases: [bigint, bigint, string][] = [
      // past the 1-GiB identity map: the first push faults
      [0x4000_0040n, BigInt(F2), "14/2"],
      // the top of the map: pushes go to MMIO below it, then the pops read it back
      [0x4000_0000n, BigInt(F2), ""],
      // an RSP that crosses into the unmapped page during the calls
      [0x4000_0000n + 0x28n, BigInt(F2), "14/2"],
      [0x0000_8000_0000_0010n, BigInt(F2), "12/0"],
      [0xffff_8000_0000_0008n, BigInt(F2), "14/2"],
      // CALL [rsi] to a non-canonical address
      [BigInt(STACK_TOP), 0x0000_9000_0000_0000n, "13/0"],
    ];
    for (const [rsp, slot, event] of cases) {
      const o = agree("long", code, setup(rsp, slot, [5n, 6n, 7n, 8n]));
      if (event !== "") expect(o.event, `rsp ${rsp.toString(16)}`).toBe(event);
    }
  });
});

describe("64-bit: MOVSXD, NEG/NOT, IMUL, BT*, 8-bit ALU, MOV m, imm, shifts, FS/GS", () => {
  // mov ebp, 24 ; L: movsxd rax, ebx ; movsxd r9, [rsi+8] ; neg rdx ; not r10d ;
  // neg byte [rsi+3] ; not word [rsi+4] ; neg qword [rsi+16] ; neg bh ; imul rax, rdx ;
  // imul r11d, [rsi+20], 0x1234 ; imul r11, rbx, -5 ; imul dx, [rsi+6] ; bt rdx, 37 ; setc r14b ;
  // bts r10, rbx ; btr eax, 3 ; btc rdx, r9 ; bt bx, di ; adc r14, 0 ; test byte [rsi+1], 0x40 ;
  // setz r15b ; cmp byte [rsi+2], 0x7f ; setl ah ; add [rsi+5], bl ; adc r14, 0 ; sub bh, [rsi+6] ;
  // and dil, [rsi+7] ; xor [rsi+9], ah ; cmp al, [rsi+10] ; sbb dl, cl ; adc byte [rsi+11], 3 ; adc r14, 0 ;
  // or al, 0x11 ; cmp al, 0x90 ; mov byte [rsi+40], 0x5a ; mov [rsi+41], dh ; mov r13b, [rsi+42] ;
  // mov ch, bl ; mov dword [rsi+24], 0x89abcdef ; mov qword [rsi+32], -7 ; and r8d, 7 ;
  // mov dword [rsi+r8*4+48], 0x1234567 ; mov word [rsi+r8*2+80], 0x4321 ; test al, 0x81 ;
  // test eax, 0x80000001 ; test rdx, 0x12345 ; test dword [rsi+24], 0x100 ; test qword [rsi+32], -2 ;
  // inc dword [rsi+44] ; dec qword [rsi+16] ; inc byte [rsi+12] ; rol edx, 5 ; ror rbx, cl ;
  // shl r10b, 3 ; sar eax, cl ; rcl r11, 1 ; mov rax, gs:[8] ; sub rax, gs:[16] ; add gs:[24], rbx ;
  // inc dword gs:[28] ; mov fs:[32], r9d ; movzx edi, byte fs:[33] ; cmp dword gs:[rdi*4+64], 0x55 ;
  // nop dword [rax+rax] ; nop word [rax+rax] ; xchg ax, ax ; cmovs r12, rdx ; cmovz r12d, ebx ;
  // dec ebp ; jnz L ; hlt (mov ebp, 24 first: ECX is data here)
  const code = hex(
    `bd 18 00 00 00 48 63 c3 4c 63 4e 08 48 f7 da 41 f7 d2 f6 5e 03 66 f7 56 04 48 f7 5e 10 f6 df
     48 0f af c2 44 69 5e 14 34 12 00 00 4c 6b db fb 66 0f af 56 06 48 0f ba e2 25 41 0f 92 c6 49
     0f ab da 0f ba f0 03 4c 0f bb ca 66 0f a3 fb 49 83 d6 00 f6 46 01 40 41 0f 94 c7 80 7e 02 7f
     0f 9c c4 00 5e 05 49 83 d6 00 2a 7e 06 40 22 7e 07 30 66 09 3a 46 0a 18 ca 80 56 0b 03 49 83
     d6 00 0c 11 3c 90 c6 46 28 5a 88 76 29 44 8a 6e 2a 88 dd c7 46 18 ef cd ab 89 48 c7 46 20 f9
     ff ff ff 41 83 e0 07 42 c7 44 86 30 67 45 23 01 66 42 c7 44 46 50 21 43 a8 81 a9 01 00 00 80
     48 f7 c2 45 23 01 00 f7 46 18 00 01 00 00 48 f7 46 20 fe ff ff ff ff 46 2c 48 ff 4e 10 fe 46
     0c c1 c2 05 48 d3 cb 41 c0 e2 03 d3 f8 49 d1 d3 65 48 8b 04 25 08 00 00 00 65 48 2b 04 25 10
     00 00 00 65 48 01 1c 25 18 00 00 00 65 ff 04 25 1c 00 00 00 64 44 89 0c 25 20 00 00 00 64 0f
     b6 3c 25 21 00 00 00 65 83 3c bd 40 00 00 00 55 0f 1f 04 00 66 0f 1f 04 00 66 90 4c 0f 48 e2
     44 0f 44 e3 ff cd 0f 85 c3 fe ff ff f4`,
  );
  const setup = (data: Uint8Array, r: bigint[], gsBase = DATA + 0x400): Setup => {
    const d = new Uint8Array(0x1000);
    d.set(data);
    d.set(data, 0x200);
    d.set(data, 0x400);
    return {
      at: DATA,
      data: d,
      regs: [
        [6, BigInt(DATA)],
        [0, r[0]],
        [3, r[1]],
        [2, r[2]],
        [7, r[3]],
        [8, r[4]],
        [10, r[5]],
        [11, r[6]],
        [12, r[7]],
        [1, r[0] ^ r[5]],
      ],
      prepare: (g) => {
        g.cpu.setSegment(4, { selector: 0, base: BigInt(DATA + 0x200), limit: 0xffffffff, ar: 0x93 });
        g.cpu.setSegment(5, {
          selector: 0,
          base: BigInt.asUintN(64, BigInt(gsBase)),
          limit: 0xffffffff,
          ar: 0x93,
        });
      },
    };
  };

  it("runs with no generic op but the HLT", () => {
    const s = setup(new Uint8Array(0x100), [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
    expect(run("long", code, "single-step", s).stop).toBe(StopReason.Halted);
    expect(genericOps("long", code, s)).toEqual([0xf4]);
  });

  it("random registers and data: single-stepping's registers, flags and memory", () => {
    fc.assert(
      fc.property(bytes, fc.array(u64, { minLength: 8, maxLength: 8 }), (data, r) => {
        const o = agree("long", code, setup(data, r));
        expect(o.stop).toBe(StopReason.Halted);
      }),
      RUNS,
    );
  });

  it("a GS base that makes gs:[8] non-canonical: #GP(0) at the load, as single-stepping", () => {
    const o = agree(
      "long",
      code,
      setup(new Uint8Array(0x100), [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n], 0x7fff_ffff_fff8),
    );
    expect(o.event).toBe("13/0");
  });

  it("a GS base in the negative half (as Linux's per-CPU areas): the fault at its address", () => {
    const o = agree(
      "long",
      code,
      setup(new Uint8Array(0x100), [9n, 8n, 7n, 6n, 5n, 4n, 3n, 2n], -0x8000_0000),
    );
    expect(o.event).toBe("14/0");
  });
});

describe("32-bit and 16-bit stacks: the handler's SS.B, limits and wraps", () => {
  // mov ecx, 24 ; L: push ebx ; push edi ; call f1 ; call [esi] ; push edx ; call f3 ; jmp [esi+4] ;
  // back: pop edi ; pop ebx ; add ebx, edi ; dec ecx ; jnz L ; hlt
  // f1: push ebp ; mov ebp, esp ; sub esp, 8 ; mov [ebp-4], edx ; add edx, [ebp-4] ; leave ; ret
  // f2: pop eax ; push eax ; xor eax, ebx ; ret       f3: ret 4
  const code32 = hex(
    `b9 18 00 00 00 53 57 e8 13 00 00 00 ff 16 52 e8 1e 00 00 00 ff 66 04 5f 5b 01 fb 49 75 e7 f4
     55 89 e5 83 ec 08 89 55 fc 03 55 fc c9 c3 58 50 31 d8 c3 c2 04 00`,
  );
  // the same in 16-bit code (slots of 2 bytes, ret 2)
  const code16 = hex(
    `b9 18 00 53 57 e8 11 00 ff 14 52 e8 1e 00 ff 64 02 5f 5b 01 fb 49 75 eb f4 55 89 e5 83 ec 04
     89 56 fe 03 56 fe c9 c3 58 50 31 d8 c3 c2 02 00`,
  );
  const slots32 = (): Uint8Array => {
    const d = new Uint8Array(0x1000);
    d.set([...le64(CODE + 0x2d).slice(0, 4), ...le64(CODE + 0x17).slice(0, 4)]);
    return d;
  };

  it("a flat 32-bit stack, and one crossing a page", () => {
    fc.assert(
      fc.property(fc.array(u64, { minLength: 3, maxLength: 3 }), fc.constantFrom(0n, 2n, 0x7fd0n), (r, d) => {
        const s: Setup = {
          at: DATA,
          data: slots32(),
          regs: [
            [6, BigInt(DATA)],
            [4, BigInt(STACK_TOP) + d],
            [3, r[0]],
            [7, r[1]],
            [2, r[2]],
          ],
        };
        expect(agree("prot32", code32, s).stop).toBe(StopReason.Halted);
      }),
      RUNS,
    );
  });

  it("a 16-bit stack segment (SS.B = 0, base 0x20000): SP wraps, ESP's high half stays, #SS past the limit", () => {
    const events = new Set<string>();
    fc.assert(
      fc.property(
        fc.array(u64, { minLength: 3, maxLength: 3 }),
        fc.constantFrom(0x8000n, 0x0002n, 0x0001n, 0x0000n, 0x1_0004n, 0xffff_7000n),
        (r, esp) => {
          const s: Setup = {
            at: DATA,
            data: slots32(),
            regs: [
              [6, BigInt(DATA)],
              [4, esp],
              [3, r[0]],
              [7, r[1]],
              [2, r[2]],
            ],
            prepare: (g) => g.cpu.setSegment(2, { selector: 0x28, base: 0x20000n, limit: 0xffff, ar: 0x93 }),
          };
          events.add(agree("prot32", code32, s).event);
        },
      ),
      { numRuns: 30 },
    );
    // EBP = ESP with a high half is past the 64-KiB limit: #SS(0) at mov [ebp-4]
    expect([...events]).toContain("12/0");
  });

  it("real mode: 16-bit CALL/RET/PUSH/POP/LEAVE with SP wrapping through 0", () => {
    fc.assert(
      fc.property(
        fc.array(u64, { minLength: 3, maxLength: 3 }),
        fc.constantFrom(0x6000n, 0x0002n, 0x0001n, 0x0000n, 0xffffn),
        (r, sp) => {
          const data = new Uint8Array(0x1000);
          data.set([0x27, 0x00, 0x11, 0x00]);
          const s: Setup = {
            at: DATA16,
            data,
            regs: [
              [6, BigInt(DATA16)],
              [4, sp],
              [3, r[0]],
              [7, r[1]],
              [2, r[2]],
            ],
          };
          agree("real", code16, s);
        },
      ),
      RUNS,
    );
  });
});
