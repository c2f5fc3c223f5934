// Guests that reach for guest-physical memory with nothing behind it (no RAM, ROM or device): a jump
// there, and a page walk whose page directory lies there. Shared by the soft suite and the KVM
// comparison (test/soft/outside-ram.test.ts, test/kvm/outside-ram.test.ts).

import { createMachine, type Machine, type RunResult } from "../../lib/index.js";

/** guest-physical address far above the machine's RAM and below the PCI hole */
export const NOWHERE = 0x40000000;
/** the linear address whose page directory the walk guest points at NOWHERE */
export const UNMAPPED_LINEAR = 0x80000000;
const HANDLER = 0x4000;
const IDT = 0x3000;

const imm32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

export interface JumpRun {
  result: RunResult;
  rip: bigint;
}

/** mov eax, NOWHERE; jmp eax */
export async function jumpNowhere(backend: "soft" | "kvm", mode: "protected" | "long"): Promise<JumpRun> {
  const vm = await createMachine({ backend, memoryMiB: 16 });
  try {
    vm.loadFlat(Uint8Array.from([0xb8, ...imm32(NOWHERE), 0xff, 0xe0, 0xf4]), { mode });
    const result = await vm.run({ timeoutMs: 10_000, maxExits: 100 });
    return { result, rip: vm.vcpu(0).getRegs().rip };
  } finally {
    vm.close();
  }
}

export interface FaultRun {
  result: RunResult;
  /** the #PF handler's view: its vector's error code and CR2 */
  errorCode: bigint;
  cr2: bigint;
  /** RIP after the handler's HLT */
  rip: bigint;
}

/**
 * Long mode; the PDPT entry for UNMAPPED_LINEAR names a page directory at NOWHERE; the guest loads
 * (or stores) at UNMAPPED_LINEAR. Every vector goes to one handler that pops the error code into
 * RAX, reads CR2 into RBX and halts.
 */
export async function walkThroughNowhere(backend: "soft" | "kvm", write: boolean): Promise<FaultRun> {
  const vm = await createMachine({ backend, memoryMiB: 16 });
  try {
    const access = write ? [0x89, 0x08] : [0x8b, 0x08]; // mov [rax], ecx / mov ecx, [rax]
    vm.loadFlat(Uint8Array.from([0xb8, ...imm32(UNMAPPED_LINEAR), ...access, 0xf4]), { mode: "long" });
    pointPdptAtNowhere(vm);
    const cpu = vm.vcpu(0);
    const cs = cpu.getSregs().cs.selector;
    const idt = new Uint8Array(16 * 32);
    for (let v = 0; v < 32; v++) {
      idt.set([HANDLER & 0xff, HANDLER >> 8, cs & 0xff, cs >> 8, 0, 0x8e, 0, 0], v * 16);
    }
    vm.memory.write(IDT, idt);
    vm.memory.write(HANDLER, Uint8Array.from([0x58, 0x0f, 0x20, 0xd3, 0xf4])); // pop rax; mov rbx, cr2; hlt
    cpu.setSregs({ idt: { base: BigInt(IDT), limit: idt.length - 1 } });
    const result = await vm.run({ timeoutMs: 10_000, maxExits: 100 });
    const r = cpu.getRegs();
    return { result, errorCode: r.rax, cr2: r.rbx, rip: r.rip };
  } finally {
    vm.close();
  }
}

function pointPdptAtNowhere(vm: Machine): void {
  const pml4 = Number(vm.vcpu(0).getSregs().cr3 & ~0xfffn);
  const pdpt = vm.memory.readU32(pml4) & ~0xfff;
  const slot = pdpt + (UNMAPPED_LINEAR / 2 ** 30) * 8;
  vm.memory.writeU32(slot, NOWHERE | 3);
  vm.memory.writeU32(slot + 4, 0);
}
