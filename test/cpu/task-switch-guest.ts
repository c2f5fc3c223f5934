// The task-switch guest shared by the bare-interpreter, VMX, soft-backend and real-KVM tests: flat
// 32-bit protected mode on entry, loaded at 0x100000; it builds its own GDT, IDT and TSSs, then
// runs the cases its mask selects: (1) CALL to a TSS and IRET back, (2) JMP through a GDT task gate
// and back, (3) INT n through an IDT task gate, (4) a #NP with its error code through a task gate,
// (5) a double fault through a task gate (the Linux-i386 case), (6) a #TS raised past a switch's
// commit point, (7) CALL and IRET with paging on, each TSS naming its page directory. It prints
// EFLAGS, TR, CR0.TS, registers, back-links, busy bytes and CR3 to port 0xE9.
// Built at dev time from the source below: as --32; ld -m elf_i386 -Ttext 0x100000; objcopy -O
// binary (trailing zeros dropped: guest RAM starts zeroed).
//
//   # Task-switch differential guest: flat 32-bit protected mode on entry (any flat CS/DS), loaded at
//   # 0x100000. Builds its own GDT/IDT/TSSs and prints over port 0xE9.
//     .code32
//     .set BASE, 0x100000
//     .set IDT, BASE + 0x2000
//     .set TSS0, BASE + 0x1000
//     .set TSSA, BASE + 0x1080
//     .set TSSB, BASE + 0x1100
//     .set TSSC, BASE + 0x1180
//     .set TSSE, BASE + 0x1200
//     .set TSSD, BASE + 0x1280
//     .set TSSF, BASE + 0x1300
//     .set STK0, BASE + 0x3000
//     .set STKA, BASE + 0x3400
//     .set STKB, BASE + 0x3800
//     .set STKC, BASE + 0x3c00
//     .set STKE, BASE + 0x4000
//     .set STKD, BASE + 0x4400
//     .set STKF, BASE + 0x4800
//     .set PD1, BASE + 0x5000
//     .set PD2, BASE + 0x6000
//     .globl _start
//   _start:
//     jmp start
//     .p2align 2
//   # the host picks the cases: bit n runs case n+1
//   mask:  .long 0x1f
//   start:
//     cli
//     lgdt gdtr
//     lidt idtr
//     ljmp $0x08, $reload
//   reload:
//     mov $0x10, %ax
//     mov %ax, %ds
//     mov %ax, %es
//     mov %ax, %ss
//     mov %ax, %fs
//     mov %ax, %gs
//     mov $STK0, %esp
//     mov $gdt+0x18, %edi; mov $TSS0, %eax; call tssdesc
//     mov $gdt+0x20, %edi; mov $TSSA, %eax; call tssdesc
//     mov $gdt+0x28, %edi; mov $TSSB, %eax; call tssdesc
//     mov $gdt+0x38, %edi; mov $TSSC, %eax; call tssdesc
//     mov $gdt+0x40, %edi; mov $TSSE, %eax; call tssdesc
//     mov $gdt+0x48, %edi; mov $TSSD, %eax; call tssdesc
//     mov $TSSA, %ebx; mov $task_a, %eax; mov $STKA, %ecx; call tssinit
//     mov $TSSB, %ebx; mov $task_b, %eax; mov $STKB, %ecx; call tssinit
//     mov $TSSC, %ebx; mov $task_c, %eax; mov $STKC, %ecx; call tssinit
//     mov $TSSE, %ebx; mov $task_e, %eax; mov $STKE, %ecx; call tssinit
//     mov $TSSD, %ebx; mov $task_d, %eax; mov $STKD, %ecx; call tssinit
//     movl $0x480000, IDT+8*8
//     movl $0x8500, IDT+8*8+4
//     movl $0x400000, IDT+11*8
//     movl $0x8500, IDT+11*8+4
//     movl $0x380000, IDT+0x40*8
//     movl $0x8500, IDT+0x40*8+4
//     mov $0x18, %ax
//     ltr %ax
//     mov $0xaaaa0001, %esi
//     mov $0xbbbb0002, %edi
//     mov $0xcccc0003, %ebp
//     testl $1, mask
//     jz 1f
//     # 1: CALL to a TSS descriptor; the task returns with IRET (NT=1)
//     lcall $0x20, $0
//     mov $'a', %al
//     call state
//     call nl
//     clts
//   1:  testl $2, mask
//     jz 1f
//     # 2: JMP through a task gate in the GDT; the task JMPs back to this one
//     ljmp $0x30, $0
//     mov $'b', %al
//     call state
//     call nl
//     clts
//   1:  testl $4, mask
//     jz 1f
//     # 3: INT n through a task gate in the IDT
//     int $0x40
//     mov $'c', %al
//     call state
//     call nl
//     clts
//   1:  testl $8, mask
//     jz 1f
//     # 4: #NP(0x58) through a task gate: the error code is on the new task's stack
//     mov $0x58, %ax
//     mov %ax, %ds
//     mov $'e', %al
//     call state
//     call nl
//     clts
//   1:  testl $64, mask
//     jz 1f
//     # 7: paging on; CALL to a task whose TSS names another page directory, IRET reloads the
//     # caller's from its TSS (the processor never writes the CR3 field)
//     movl $0x83, PD1
//     movl $0x83, PD2
//     movl $PD1, TSS0+0x1c
//     movl $PD2, TSSA+0x1c
//     mov %cr4, %eax
//     or $0x10, %eax
//     mov %eax, %cr4
//     mov $PD1, %eax
//     mov %eax, %cr3
//     mov %cr0, %eax
//     or $0x80000000, %eax
//     mov %eax, %cr0
//     lcall $0x20, $0
//     mov $'p', %al
//     call state
//     mov %cr3, %eax
//     call hex
//     call nl
//     mov %cr0, %eax
//     and $0x7fffffff, %eax
//     mov %eax, %cr0
//     clts
//   1:  testl $32, mask
//     jz 1f
//     # 6: CALL to a task whose SS is a code segment: #TS(0x08) past the commit point, delivered in
//     # the new task through an interrupt gate
//     mov $ts_handler, %eax
//     mov %ax, IDT+10*8
//     movw $0x08, IDT+10*8+2
//     movw $0x8e00, IDT+10*8+4
//     shr $16, %eax
//     mov %ax, IDT+10*8+6
//     mov $TSSF, %ebx; mov $task_f, %eax; mov $STKF, %ecx; call tssinit
//     movl $0x08, 0x50(%ebx)
//     mov $gdt+0x50, %edi; mov $TSSF, %eax; call tssdesc
//     lcall $0x50, $0
//   1:  testl $16, mask
//     jz 1f
//     # 5: #NP with its gate not present: #NP during its delivery, a double fault, through a task gate
//     andb $0x7f, IDT+11*8+5
//     mov $0x58, %ax
//   df_insn:
//     mov %ax, %ds
//   1:  mov $'.', %al
//     call putc
//     call nl
//     cli
//     hlt
//
//   task_a:
//     mov $'A', %al
//     call state
//     movzwl TSSA, %eax
//     call hex
//     movzbl gdt+0x18+5, %eax
//     call hex
//     mov %cr3, %eax
//     call hex
//     call nl
//     iret
//     jmp task_a
//
//   task_b:
//     mov $'B', %al
//     call state
//     movzwl TSSB, %eax
//     call hex
//     movzbl gdt+0x18+5, %eax
//     call hex
//     movzbl gdt+0x28+5, %eax
//     call hex
//     call nl
//     ljmp $0x18, $0
//
//   task_c:
//     mov $'C', %al
//     call state
//     movzwl TSSC, %eax
//     call hex
//     call nl
//     iret
//     jmp task_c
//
//   task_e:
//     mov $'E', %al
//     call state
//     pop %eax
//     call hex
//     movzwl TSSE, %eax
//     call hex
//     call nl
//     addl $2, TSS0+0x20
//     iret
//     jmp task_e
//
//   task_d:
//     mov $'D', %al
//     call state
//     pop %eax
//     call hex
//     movzwl TSSD, %eax
//     call hex
//     mov TSS0+0x20, %eax
//     sub $df_insn, %eax
//     call hex
//     call nl
//     cli
//     hlt
//
//   ts_handler:
//     mov $'T', %al
//     call state
//     pop %eax
//     call hex
//     pop %eax
//     sub $task_f, %eax
//     call hex
//     call nl
//     cli
//     hlt
//   task_f:
//     hlt
//
//   # al = tag; prints tag, EFLAGS, TR, CR0.TS, ESI, EDI, EBP
//   state:
//     call putc
//     pushf
//     pop %eax
//     call hex
//     str %ax
//     movzwl %ax, %eax
//     call hex
//     mov %cr0, %eax
//     and $8, %eax
//     call hex
//     mov %esi, %eax
//     call hex
//     mov %edi, %eax
//     call hex
//     mov %ebp, %eax
//     call hex
//     ret
//
//   putc:
//     out %al, $0xe9
//     ret
//   nl:
//     mov $'\n', %al
//     jmp putc
//
//   # eax as ' ' and 8 hex digits
//   hex:
//     push %ecx
//     push %edx
//     mov %eax, %edx
//     mov $' ', %al
//     call putc
//     mov $8, %ecx
//   1:  rol $4, %edx
//     mov %dl, %al
//     and $15, %al
//     add $'0', %al
//     cmp $'9', %al
//     jbe 2f
//     add $7, %al
//   2:  call putc
//     loop 1b
//     pop %edx
//     pop %ecx
//     ret
//
//   # edi = GDT slot, eax = base: an available 32-bit TSS, limit 0x67
//   tssdesc:
//     movw $0x67, (%edi)
//     mov %ax, 2(%edi)
//     shr $16, %eax
//     mov %al, 4(%edi)
//     movb $0x89, 5(%edi)
//     movb $0, 6(%edi)
//     mov %ah, 7(%edi)
//     ret
//
//   # ebx = TSS, eax = EIP, ecx = ESP: ring 0, flat segments, interrupts off
//   tssinit:
//     push %edi
//     push %eax
//     push %ecx
//     mov %ebx, %edi
//     mov $0x68, %ecx
//     xor %eax, %eax
//     rep stosb
//     pop %ecx
//     pop %eax
//     mov %eax, 0x20(%ebx)
//     movl $2, 0x24(%ebx)
//     mov %ecx, 0x38(%ebx)
//     movl $0x10, 0x48(%ebx)
//     movl $0x08, 0x4c(%ebx)
//     movl $0x10, 0x50(%ebx)
//     movl $0x10, 0x54(%ebx)
//     movl $0x10, 0x58(%ebx)
//     movl $0x10, 0x5c(%ebx)
//     movw $0x68, 0x66(%ebx)
//     movl $0x12345678 + 1, %edx
//     mov %edx, 0x28(%ebx)
//     pop %edi
//     ret
//
//     .p2align 3
//   gdtr:  .word 0x5f
//     .long gdt
//     .p2align 3
//   idtr:  .word 0x41*8-1
//     .long IDT
//
//     .p2align 3
//   gdt:  .quad 0
//     .quad 0x00cf9b000000ffff
//     .quad 0x00cf93000000ffff
//     .quad 0, 0, 0
//     .quad 0x0000850000280000
//     .quad 0, 0, 0, 0
//     # 0x58: a data segment that is not present
//     .quad 0x00cf13000000ffff

import { createBareHooks, Interpreter, type StopReason } from "../../lib/cpu/index.js";
import type { Regs, SpecialRegs } from "../../lib/types/regs.js";
import { createMachine } from "../../lib/vmm/machine.js";

export const TASK_GUEST_BASE = 0x100000;
/** where the guest's own GDT lies (the symbol `gdt` of the build) */
export const TASK_GUEST_GDT = 0x1004a8;
/** image offset of the case mask */
const MASK_OFFSET = 4;
/** guest RAM the image needs: code and GDT at 0x100000, TSSs, IDT and stacks up to 0x104800 */
export const TASK_GUEST_RAM = 2 << 20;

const HEX = [
  "eb0666901f000000fa0f0115980410000f011da0041000ea1e001000080066b810008ed88ec08ed08ee08ee8bc00301000bf",
  "c0041000b800101000e8e2030000bfc8041000b880101000e8d3030000bfd0041000b800111000e8c4030000bfe0041000b8",
  "80111000e8b5030000bfe8041000b800121000e8a6030000bff0041000b880121000e897030000bb80101000b8c1021000b9",
  "00341000e89e030000bb00111000b8f0021000b900381000e88a030000bb80111000b827031000b9003c1000e876030000bb",
  "00121000b842031000b900401000e862030000bb80121000b86a031000b900441000e84e030000c7054020100000004800c7",
  "054420100000850000c7055820100000004000c7055c20100000850000c7050022100000003800c705042210000085000066",
  "b818000f00d8be0100aaaabf0200bbbbbd0300ccccf705040010000100000074159a000000002000b061e85e020000e89502",
  "00000f06f70504001000020000007415ea000000003000b062e83d020000e8740200000f06f70504001000040000007410cd",
  "40b063e821020000e8580200000f06f7050400100008000000741466b858008ed8b065e801020000e8380200000f06f70504",
  "00100040000000746cc7050050100083000000c7050060100083000000c7051c10100000501000c7059c101000006010000f",
  "20e083c8100f22e0b8005010000f22d80f20c00d000000800f22c09a000000002000b070e89c0100000f20d8e8d4010000e8",
  "cb0100000f20c025ffffff7f0f22c00f06f70504001000200000007457b89903100066a35020100066c70552201000080066",
  "c70554201000008ec1e81066a356201000bb00131000b8b8031000b900481000e8c0010000c7435008000000bff8041000b8",
  "00131000e88f0100009a000000005000f7050400100010000000740d80255d2010007f66b858008ed8b02ee838010000e836",
  "010000faf4b041e8f10000000fb70580101000e8250100000fb605c5041000e8190100000f20d8e811010000e808010000cf",
  "ebd1b042e8c20000000fb70500111000e8f60000000fb605c5041000e8ea0000000fb605d5041000e8de000000e8d5000000",
  "ea000000001800b043e88b0000000fb70580111000e8bf000000e8b6000000cfebe5b045e87000000058e8aa0000000fb705",
  "00121000e89e000000e89500000083052010100002cfebd8b044e84800000058e8820000000fb70580121000e876000000a1",
  "201010002db1021000e867000000e85e000000faf4b054e81900000058e853000000582db8031000e848000000e83f000000",
  "faf4f4e8340000009c58e834000000660f00c80fb7c0e8280000000f20c083e008e81d00000089f0e81600000089f8e80f00",
  "000089e8e808000000c3e6e9c3b00aebf9515289c2b020e8eeffffffb908000000c1c20488d0240f04303c3976020407e8d5",
  "ffffffe2ea5a59c366c707670066894702c1e810884704c6470589c6470600886707c357505189dfb96800000031c0f3aa59",
  "58894320c7432402000000894b38c7434810000000c7434c08000000c7435010000000c7435410000000c7435810000000c7",
  "435c1000000066c743666800ba795634128953285fc38d7426005f00a8041000669007020020100066900000000000000000",
  "ffff0000009bcf00ffff00000093cf0000000000000000000000000000000000000000000000000000002800008500000000",
  "000000000000000000000000000000000000000000000000000000000000ffff00000013cf",
].join("");

/** cases 1-5 (bit n of the mask runs case n+1); case 5 and case 6 each end the run */
export const ALL_CASES = 0x1f;
/** case 6: a #TS raised past the commit point, handled in the new task */
export const TS_CASE = 0x20;
/** case 7: paging on, CR3 from the new TSS on CALL and from the caller's on IRET (case 1's task) */
export const PAGING_CASE = 0x40;

export function taskSwitchGuest(mask = ALL_CASES): Uint8Array {
  const image = Uint8Array.from(HEX.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
  new DataView(image.buffer).setUint32(MASK_OFFSET, mask, true);
  return image;
}

export interface BareRun {
  cpu: Interpreter;
  ram: Uint8Array;
  out: string;
  stop: StopReason;
}

/** Runs the guest on the interpreter alone (no VMX), from flat 32-bit protected mode. */
export function runTaskGuestBare(mask = ALL_CASES, budget = 1_000_000): BareRun {
  const ram = new Uint8Array(TASK_GUEST_RAM);
  ram.set(taskSwitchGuest(mask), TASK_GUEST_BASE);
  let out = "";
  const cpu = new Interpreter();
  cpu.hooks = createBareHooks(ram, {
    portOut: (port, _size, value) => {
      if (port === 0xe9) out += String.fromCharCode(value & 0xff);
    },
    portIn: () => 0xff,
  });
  cpu.setSegment(1, { selector: 0x08, base: 0n, limit: 0xffffffff, ar: 0xc09b });
  for (const s of [0, 2, 3, 4, 5])
    cpu.setSegment(s, { selector: 0x10, base: 0n, limit: 0xffffffff, ar: 0xc093 });
  cpu.setControl("cr0", 0x11n);
  cpu.setRip(BigInt(TASK_GUEST_BASE));
  cpu.setGpr(4, BigInt(TASK_GUEST_BASE));
  const stop = cpu.run(budget);
  return { cpu, ram, out, stop };
}

export interface MachineRun {
  out: string;
  reason: string;
  exits: number;
  /** exit kinds the loop saw (a task switch must never be one of them) */
  kinds: Set<string>;
  regs: Regs;
  sregs: SpecialRegs;
}

/** Runs the guest with createMachine on a backend, loaded by the flat loader in protected mode. */
export async function runTaskGuestOn(backend: "soft" | "kvm", mask = ALL_CASES): Promise<MachineRun> {
  const vm = await createMachine({ memoryMiB: TASK_GUEST_RAM >> 20, backend, vcpuThread: false });
  try {
    let out = "";
    vm.io.onOut(0xe9, (_port, _size, value) => {
      out += String.fromCharCode(Number(value) & 0xff);
    });
    const kinds = new Set<string>();
    vm.on("exit", (e) => {
      kinds.add(e.kind);
    });
    vm.loadFlat(taskSwitchGuest(mask), { address: TASK_GUEST_BASE, mode: "protected" });
    const r = vm.runSync({ maxExits: 10_000, timeoutMs: 20_000 });
    return {
      out,
      reason: r.reason,
      exits: r.exits,
      kinds,
      regs: vm.vcpu(0).getRegs(),
      sregs: vm.vcpu(0).getSregs(),
    };
  } finally {
    vm.close();
  }
}
