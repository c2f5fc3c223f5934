// Guests that the real-KVM suite (test/kvm/guests.test.ts) and the soft backend
// (test/soft/kvm-suite.test.ts) both run: the same bytes, set up by the same mode helpers, checked by
// the same expectations, so the two backends are held to one observable behaviour.

import { expect } from "vitest";
import type { IoExit, VmExit } from "../../lib/types/exits.js";
import { enterLongMode, enterProtectedMode, enterRealMode, type RegisterAccess, u32 } from "./modes.js";

/** RAM both suites give a guest, at guest-physical 0; 0x10000 and up is MMIO. */
export const GUEST_RAM_BYTES = 0x10000;
/** where the guests' code starts */
export const CODE_AT = 0x1000;

/** A vCPU of either backend (KVM's exits have the shapes of the VmExit union). */
export interface GuestVcpu extends RegisterAccess {
  run(): VmExit;
}

export interface GuestVm {
  vcpu: GuestVcpu;
  /** the guest's RAM from guest-physical 0, GUEST_RAM_BYTES long */
  ram: Uint8Array;
}

export interface SharedGuest {
  id: "real-print" | "rep-outsb" | "protected-out" | "long-mode" | "mmio" | "cpuid";
  name: string;
  run(vm: GuestVm): void;
}

export function expectIo(exit: VmExit): IoExit {
  if (exit.kind !== "io") throw new Error(`expected an io exit, got ${exit.kind}`);
  return exit;
}

export const SHARED_GUESTS: readonly SharedGuest[] = [
  {
    id: "real-print",
    name: "real mode: prints through OUT 0x3f8, then HLT",
    run({ vcpu, ram }) {
      const msg = "Hi KVM\n";
      // mov dx,0x3f8; mov si,msg; l: lodsb; test al,al; jz done; out dx,al; jmp l; done: hlt
      ram.set(
        [0xba, 0xf8, 0x03, 0xbe, 0x10, 0x10, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xf4],
        CODE_AT,
      );
      ram.set(new TextEncoder().encode(`${msg}\0`), 0x1010);
      enterRealMode(vcpu, CODE_AT);
      let out = "";
      for (let exit = vcpu.run(); exit.kind !== "hlt"; exit = vcpu.run()) {
        const io = expectIo(exit);
        expect({ port: io.port, direction: io.direction, size: io.size, count: io.count }).toEqual({
          port: 0x3f8,
          direction: "out",
          size: 1,
          count: 1,
        });
        out += String.fromCharCode(io.data[0]!);
      }
      expect(out).toBe(msg);
      expect(vcpu.getRegs().rip).toBe(0x100fn); // past the HLT
    },
  },
  {
    // KVM may batch string I/O (count > 1) or not, depending on how it emulates the instruction
    id: "rep-outsb",
    name: "string I/O: REP OUTSB delivers its bytes, size*count per exit",
    run({ vcpu, ram }) {
      // mov dx,0x3f8; mov si,0x1010; mov cx,5; cld; rep outsb; hlt
      ram.set([0xba, 0xf8, 0x03, 0xbe, 0x10, 0x10, 0xb9, 0x05, 0x00, 0xfc, 0xf3, 0x6e, 0xf4], CODE_AT);
      ram.set(new TextEncoder().encode("abcde"), 0x1010);
      enterRealMode(vcpu, CODE_AT);
      let out = "";
      for (let exit = vcpu.run(); exit.kind !== "hlt"; exit = vcpu.run()) {
        const io = expectIo(exit);
        expect(io.data.length).toBe(io.size * io.count);
        out += new TextDecoder().decode(io.data);
      }
      expect(out).toBe("abcde");
    },
  },
  {
    id: "protected-out",
    name: "protected mode: a 32-bit OUT of EAX",
    run({ vcpu, ram }) {
      // mov eax,0x12345678; mov dx,0x3f8; out dx,eax; hlt
      ram.set([0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4], CODE_AT);
      enterProtectedMode(vcpu, CODE_AT);
      const io = expectIo(vcpu.run());
      expect(io.size).toBe(4);
      expect(u32(io.data)).toBe(0x12345678);
      expect(vcpu.run().kind).toBe("hlt");
      expect(vcpu.getSregs().cr0 & 1n).toBe(1n);
    },
  },
  {
    id: "long-mode",
    name: "long mode with test-built page tables: 64-bit register",
    run({ vcpu, ram }) {
      // mov rax,0x1122334455667788; mov dx,0x3f8; out dx,eax; hlt
      ram.set(
        [0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4],
        CODE_AT,
      );
      enterLongMode(vcpu, ram, CODE_AT);
      const io = expectIo(vcpu.run());
      expect(u32(io.data)).toBe(0x55667788);
      expect(vcpu.run().kind).toBe("hlt");
      expect(vcpu.getRegs().rax).toBe(0x1122334455667788n);
      expect(vcpu.getSregs().efer & 0x400n).toBe(0x400n); // LMA
    },
  },
  {
    id: "mmio",
    name: "MMIO: the test completes a read and sees a write",
    run({ vcpu, ram }) {
      // mov ax,0x1000; mov ds,ax; mov ax,[0x10]; mov [0x20],ax; mov dx,0x3f8; out dx,ax; hlt
      ram.set(
        [0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa1, 0x10, 0x00, 0xa3, 0x20, 0x00, 0xba, 0xf8, 0x03, 0xef, 0xf4],
        CODE_AT,
      );
      enterRealMode(vcpu, CODE_AT);
      const read = vcpu.run();
      expect(read).toMatchObject({ kind: "mmio", address: 0x10010, length: 2, write: false });
      if (read.kind !== "mmio") throw new Error("unreachable");
      read.data.set([0xcd, 0xab]); // the device's answer (on KVM, written into kvm_run)
      const write = vcpu.run();
      expect(write).toMatchObject({ kind: "mmio", address: 0x10020, length: 2, write: true });
      if (write.kind !== "mmio") throw new Error("unreachable");
      expect([...write.data]).toEqual([0xcd, 0xab]);
      const io = expectIo(vcpu.run());
      expect(io.data[0]! | (io.data[1]! << 8)).toBe(0xabcd);
    },
  },
  {
    // on KVM the vCPU needs a CPUID table first (KVM_SET_CPUID2), as the machine backend gives it
    id: "cpuid",
    name: "CPUID and HLT: the leaf-0 vendor reaches the loop through OUT, then the guest halts",
    run({ vcpu, ram }) {
      // xor eax,eax; cpuid; mov eax,ebx; mov dx,0x3f8; out dx,eax; hlt
      ram.set([0x31, 0xc0, 0x0f, 0xa2, 0x89, 0xd8, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4], CODE_AT);
      enterProtectedMode(vcpu, CODE_AT);
      const io = expectIo(vcpu.run());
      // EBX of leaf 0 is the first four vendor characters, whatever the vendor
      expect(new TextDecoder().decode(io.data)).toMatch(/^[A-Za-z ]{4}$/);
      expect(vcpu.run().kind).toBe("hlt");
      expect(vcpu.getRegs().rip).toBe(0x100cn);
    },
  },
];

/**
 * Real mode: programs the 8259 pair (vectors 0x20..0x27, all masked but IRQ 3), points IVT entry
 * 0x23 at `handler`, says "ready" with OUT 0x10, then waits in HLT with interrupts on. The handler
 * sends the EOI and answers 0x42 on port 0x11. The backends deliver IRQ 3 differently (KVM's
 * in-kernel irqchip, or an 8259 model in the host), so each suite drives this one itself.
 */
export const IRQ3_GUEST = {
  code: [
    ...[0xfa], // cli
    ...[0xc7, 0x06, 0x8c, 0x00, 0x00, 0x11], // mov word [0x23*4], 0x1100
    ...[0xc7, 0x06, 0x8e, 0x00, 0x00, 0x00], // mov word [0x23*4+2], 0
    ...[0xb0, 0x11, 0xe6, 0x20], // ICW1
    ...[0xb0, 0x20, 0xe6, 0x21], // ICW2: vectors 0x20..0x27
    ...[0xb0, 0x04, 0xe6, 0x21], // ICW3
    ...[0xb0, 0x01, 0xe6, 0x21], // ICW4: 8086 mode
    ...[0xb0, 0xf7, 0xe6, 0x21], // mask all but IRQ 3
    ...[0xb0, 0x01, 0xe6, 0x10], // tell the host: ready
    ...[0xfb], // sti
    ...[0xf4, 0xeb, 0xfd], // l: hlt; jmp l
  ],
  codeAt: CODE_AT,
  /** mov al,0x20; out 0x20,al (EOI); mov al,0x42; out 0x11,al; iret */
  handler: [0xb0, 0x20, 0xe6, 0x20, 0xb0, 0x42, 0xe6, 0x11, 0xcf],
  handlerAt: 0x1100,
  irq: 3,
  readyPort: 0x10,
  ackPort: 0x11,
  ackValue: 0x42,
} as const;
