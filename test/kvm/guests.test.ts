// Real guests on /dev/kvm, built here as bytes: real, protected and long mode, MMIO, translate,
// single-step and hardware breakpoints, dirty logging.

import { describe, expect, it } from "vitest";
import type { KvmExit, KvmIoExit } from "../../lib/kvm/index.js";
import {
  debugRegistersEmulatedByTcg,
  enterLongMode,
  enterProtectedMode,
  enterRealMode,
  HIGH,
  makeVm,
  probe,
  skipReason,
  u32,
} from "./helpers.js";

function expectIo(exit: KvmExit): KvmIoExit {
  if (exit.kind !== "io") throw new Error(`expected an io exit, got ${JSON.stringify(exit)}`);
  return exit;
}

describe.skipIf(!probe.usable)(`real KVM guests${skipReason}`, () => {
  it("real mode: prints through OUT 0x3f8, then HLT", () => {
    const t = makeVm();
    try {
      const msg = "Hi KVM\n";
      // mov dx,0x3f8; mov si,msg; l: lodsb; test al,al; jz done; out dx,al; jmp l; done: hlt
      t.mem.set(
        [0xba, 0xf8, 0x03, 0xbe, 0x10, 0x10, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xf4],
        0x1000,
      );
      t.mem.set(new TextEncoder().encode(`${msg}\0`), 0x1010);
      enterRealMode(t.vcpu, 0x1000);
      let out = "";
      for (;;) {
        const exit = t.vcpu.run();
        if (exit.kind === "hlt") break;
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
      expect(t.vcpu.getRegs().rip).toBe(0x100fn); // past the HLT
    } finally {
      t.close();
    }
  });

  // KVM may batch string I/O (count > 1) or not, depending on how it emulates the instruction
  it("string I/O: REP OUTSB delivers its bytes, size*count per exit", () => {
    const t = makeVm();
    try {
      // mov dx,0x3f8; mov si,0x1010; mov cx,5; cld; rep outsb; hlt
      t.mem.set([0xba, 0xf8, 0x03, 0xbe, 0x10, 0x10, 0xb9, 0x05, 0x00, 0xfc, 0xf3, 0x6e, 0xf4], 0x1000);
      t.mem.set(new TextEncoder().encode("abcde"), 0x1010);
      enterRealMode(t.vcpu, 0x1000);
      let out = "";
      for (let exit = t.vcpu.run(); exit.kind !== "hlt"; exit = t.vcpu.run()) {
        const io = expectIo(exit);
        expect(io.data.length).toBe(io.size * io.count);
        out += new TextDecoder().decode(io.data);
      }
      expect(out).toBe("abcde");
    } finally {
      t.close();
    }
  });

  it("protected mode: a 32-bit OUT of EAX", () => {
    const t = makeVm();
    try {
      // mov eax,0x12345678; mov dx,0x3f8; out dx,eax; hlt
      t.mem.set([0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4], 0x1000);
      enterProtectedMode(t.vcpu, 0x1000);
      const io = expectIo(t.vcpu.run());
      expect(io.size).toBe(4);
      expect(u32(io.data)).toBe(0x12345678);
      expect(t.vcpu.run().kind).toBe("hlt");
      expect(t.vcpu.getSregs().cr0 & 1n).toBe(1n);
    } finally {
      t.close();
    }
  });

  it("long mode with test-built page tables: 64-bit register, translate()", () => {
    const t = makeVm();
    try {
      // mov rax,0x1122334455667788; mov dx,0x3f8; out dx,eax; hlt
      t.mem.set(
        [0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x66, 0xba, 0xf8, 0x03, 0xef, 0xf4],
        0x1000,
      );
      enterLongMode(t.vcpu, t.mem, 0x1000);
      const io = expectIo(t.vcpu.run());
      expect(u32(io.data)).toBe(0x55667788);
      expect(t.vcpu.run().kind).toBe("hlt");
      expect(t.vcpu.getRegs().rax).toBe(0x1122334455667788n);
      const s = t.vcpu.getSregs();
      expect(s.efer & 0x400n).toBe(0x400n); // LMA
      const tr = t.vcpu.translate(BigInt(HIGH + 0x1234));
      expect(tr).toMatchObject({ valid: true, physicalAddress: 0x1234n, writeable: true });
      expect(t.vcpu.translate(0x80000000n).valid).toBe(false); // PDPT[2] is not present
    } finally {
      t.close();
    }
  });

  it("MMIO: the test completes a read and sees a write", () => {
    const t = makeVm(); // 64 KiB of RAM: 0x10000 and up is MMIO
    try {
      // mov ax,0x1000; mov ds,ax; mov ax,[0x10]; mov [0x20],ax; mov dx,0x3f8; out dx,ax; hlt
      t.mem.set(
        [0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa1, 0x10, 0x00, 0xa3, 0x20, 0x00, 0xba, 0xf8, 0x03, 0xef, 0xf4],
        0x1000,
      );
      enterRealMode(t.vcpu, 0x1000);
      const read = t.vcpu.run();
      expect(read).toMatchObject({ kind: "mmio", address: 0x10010, length: 2, write: false });
      if (read.kind !== "mmio") throw new Error("unreachable");
      read.data.set([0xcd, 0xab]); // the device's answer, written into kvm_run
      const write = t.vcpu.run();
      expect(write).toMatchObject({ kind: "mmio", address: 0x10020, length: 2, write: true });
      if (write.kind !== "mmio") throw new Error("unreachable");
      expect([...write.data]).toEqual([0xcd, 0xab]);
      const io = expectIo(t.vcpu.run());
      expect(io.data[0]! | (io.data[1]! << 8)).toBe(0xabcd);
    } finally {
      t.close();
    }
  });

  it("guest debug: single-step reports each instruction, a hardware breakpoint stops at its address", () => {
    const t = makeVm();
    try {
      t.mem.set([0x40, 0x40, 0x40, 0xf4], 0x1000); // inc ax x3; hlt
      enterRealMode(t.vcpu, 0x1000);
      t.vcpu.setRegs({ ...t.vcpu.getRegs(), rax: 0n });
      t.vcpu.setGuestDebug({ singleStep: true });
      const steps: [bigint, bigint][] = [];
      for (let i = 0; i < 3; i++) {
        const exit = t.vcpu.run();
        if (exit.kind !== "debug") throw new Error(`expected a debug exit, got ${exit.kind}`);
        expect(exit.exception).toBe(1);
        steps.push([exit.pc, t.vcpu.getRegs().rax]);
      }
      expect(steps).toEqual([
        [0x1001n, 1n],
        [0x1002n, 2n],
        [0x1003n, 3n],
      ]);
      t.vcpu.setGuestDebug(null);
      expect(t.vcpu.run().kind).toBe("hlt");

      // Breakpoint 0 at 0x1002 while stepping: DR0/DR7 reach the guest's debug registers, so the
      // #DB exits report B0 (DR6 bit 0) exactly at 0x1002 and nowhere else.
      enterRealMode(t.vcpu, 0x1000);
      t.vcpu.setGuestDebug({ singleStep: true, hwBreakpoints: [0x1002n] });
      const b0At: bigint[] = [];
      for (let i = 0; i < 8; i++) {
        const exit = t.vcpu.run();
        if (exit.kind === "hlt") break;
        if (exit.kind !== "debug") throw new Error(`expected a debug exit, got ${exit.kind}`);
        expect(exit.exception).toBe(1);
        if (exit.dr6 & 1n) b0At.push(exit.pc);
        // an instruction breakpoint faults before the instruction; step over it as debuggers do (RF)
        if (exit.pc === 0x1002n && exit.dr6 & 1n) break;
      }
      expect(b0At).toEqual([0x1002n]);

      // The breakpoint alone stops the guest at its address. Not under QEMU's TCG (the nested-KVM
      // lane): QEMU 7.2 loads DR7 from the VMCB on VMRUN without arming its breakpoint hooks, so
      // an L2 instruction breakpoint only shows in DR6 next to a single-step trap (checked above).
      if (!debugRegistersEmulatedByTcg) {
        enterRealMode(t.vcpu, 0x1000);
        t.vcpu.setGuestDebug({ hwBreakpoints: [0x1002n] });
        const bp = t.vcpu.run();
        expect(bp).toMatchObject({ kind: "debug", exception: 1, pc: 0x1002n });
        if (bp.kind === "debug") expect(bp.dr6 & 1n).toBe(1n); // B0: breakpoint 0 hit
      }
    } finally {
      t.close();
    }
  });

  it("dirty log: pages the guest wrote, then a cleared log", () => {
    const t = makeVm(0x10000, undefined, true);
    try {
      // mov [0x3000],al; mov [0x5004],al; hlt
      t.mem.set([0xa2, 0x00, 0x30, 0xa2, 0x04, 0x50, 0xf4], 0x1000);
      enterRealMode(t.vcpu, 0x1000);
      t.vm.getDirtyLog(0); // start from a clean log
      expect(t.vcpu.run().kind).toBe("hlt");
      const dirty = t.vm.dirtyPages(0);
      expect(dirty).toContain(0x3000);
      expect(dirty).toContain(0x5000);
      expect(dirty).not.toContain(0x7000);
      expect(dirty).not.toContain(0x9000);
      expect(t.vm.dirtyPages(0)).toEqual([]);
    } finally {
      t.close();
    }
  });
});
