// Guests that try something a CPU refuses, run through createMachine on any backend: the image is
// loaded flat at CODE in real, protected or long mode, and every exception vector 0-31 goes to a
// handler that writes its vector to port 0xE9 and halts with interrupts off. A test reads which
// vector (if any) the guest took, the error code the CPU pushed and where it stopped, and that the
// run ended in "hlt", never in a VM-entry failure.

import type { EntryMode } from "../../lib/boot/entry.js";
import type { SpecialRegs } from "../../lib/types/regs.js";
import type { RunResult } from "../../lib/vmm/loop.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";

export const CODE = 0x10000;
const IDT = 0x3000;
const HANDLERS = 0x4000;
/** the long-mode loader's 64-bit code selector, the protected-mode loader's 32-bit one */
const CS64 = 0x18;
const CS32 = 0x08;

export interface FaultRun {
  result: RunResult;
  /** vectors the handlers reported, in order (empty: the guest halted without a fault) */
  vectors: number[];
  /** RIP the exception frame holds (the faulting instruction, for a fault), when one was taken */
  frameRip?: bigint;
  /** error code the CPU pushed for #GP/#SS/#TS/#NP/#PF (protected and long mode) */
  errorCode?: bigint;
  rip: bigint;
  sregs: SpecialRegs;
}

const HAS_CODE = new Set([8, 10, 11, 12, 13, 14, 17]);

/** handler for vector v: mov al, v; out 0xe9, al; cli; hlt */
const handler = (v: number) => [0xb0, v, 0xe6, 0xe9, 0xfa, 0xf4];

function writeIdt(vm: Machine, mode: EntryMode): { base: bigint; limit: number } {
  const mem = vm.memory;
  for (let v = 0; v < 32; v++) {
    const h = HANDLERS + 16 * v;
    mem.write(h, Uint8Array.from(handler(v)));
    if (mode === "real") {
      mem.writeU16(v * 4, h);
      mem.writeU16(v * 4 + 2, 0);
    } else if (mode === "protected") {
      mem.writeU32(IDT + 8 * v, (h & 0xffff) | (CS32 << 16));
      mem.writeU32(IDT + 8 * v + 4, (h & 0xffff0000) | 0x8e00);
    } else {
      mem.writeU32(IDT + 16 * v, (h & 0xffff) | (CS64 << 16));
      mem.writeU32(IDT + 16 * v + 4, (h & 0xffff0000) | 0x8e00);
      mem.writeU32(IDT + 16 * v + 8, 0);
      mem.writeU32(IDT + 16 * v + 12, 0);
    }
  }
  if (mode === "real") return { base: 0n, limit: 0x3ff };
  return { base: BigInt(IDT), limit: mode === "long" ? 32 * 16 - 1 : 32 * 8 - 1 };
}

export interface FaultGuestOptions {
  backend?: "soft" | "kvm";
  /** changes to the vCPU before the run (registers, MSRs) */
  setup?: (vm: Machine) => void;
  maxExits?: number;
  /** ends a guest that loops without exits (a handler at a zeroed IVT entry runs zeros forever) */
  maxInstructions?: number;
}

/** Runs `code` (loaded at CODE) until it halts or the run ends otherwise. */
export async function runFaultGuest(
  mode: EntryMode,
  code: number[] | Uint8Array,
  opts: FaultGuestOptions = {},
): Promise<FaultRun> {
  const vm = await createMachine({ backend: opts.backend ?? "soft", memoryMiB: 4 });
  try {
    const vectors: number[] = [];
    vm.io.onOut(0xe9, (_port, _size, value) => {
      vectors.push(value & 0xff);
    });
    vm.loadFlat(Uint8Array.from(code), { address: CODE, mode, stack: 0x9000 });
    const vcpu = vm.vcpu(0);
    const s = vcpu.getSregs();
    vcpu.setSregs({ ...s, idt: writeIdt(vm, mode) });
    opts.setup?.(vm);
    const result = vm.runSync({
      timeoutMs: 20_000,
      maxExits: opts.maxExits ?? 10_000,
      ...(opts.maxInstructions !== undefined ? { maxInstructions: opts.maxInstructions } : {}),
    });
    const regs = vcpu.getRegs();
    const run: FaultRun = { result, vectors, rip: regs.rip, sregs: vcpu.getSregs() };
    const v = vectors[0];
    if (v !== undefined) {
      const sp = Number(regs.rsp & 0xffffffffn);
      const width = mode === "long" ? 8 : mode === "protected" ? 4 : 2;
      const read = (at: number) =>
        width === 8
          ? vm.memory.readU64(at)
          : BigInt(width === 4 ? vm.memory.readU32(at) : vm.memory.readU16(at));
      const ssBase = mode === "real" ? Number(vcpu.getSregs().ss.base) : 0;
      const withCode = mode !== "real" && HAS_CODE.has(v);
      if (withCode) run.errorCode = read(ssBase + sp);
      run.frameRip = read(ssBase + sp + (withCode ? width : 0));
    }
    return run;
  } finally {
    vm.close();
  }
}

export interface FaultCase {
  name: string;
  mode: EntryMode;
  /** hex bytes, loaded at CODE */
  code: string;
  /** the vectors the guest's handlers report: [13] for #GP, [6] for #UD, [] when nothing faults */
  vectors: number[];
  /** RIP in the exception frame (the faulting instruction) */
  frameRip?: bigint;
  /**
   * Why KVM in the nested lane (kvm_amd inside QEMU TCG, whose emulated CPU is not checked against
   * hardware) answers otherwise, when it does: the KVM suite skips the case there, saying so.
   */
  nestedDiffers?: string;
  /** Why an AMD host reports otherwise (vendor-specific behaviour): skipped on AMD, saying so. */
  amdDiffers?: string;
}

const TCG = "QEMU TCG's emulated CPU";

/**
 * Guests that fault the same way on any x86 CPU, whatever CPUID offers: the soft suite runs them
 * on the soft backend, the KVM suite on KVM and compares (test/kvm/arch-faults.test.ts).
 * Encodings from GNU as (Intel syntax in the comments).
 */
export const FAULTS_EVERYWHERE: readonly FaultCase[] = [
  // mov eax, 0xffffffff; mov cr4, rax; hlt
  {
    name: "CR4 = 0xFFFFFFFF",
    mode: "long",
    code: "b8 ff ff ff ff 0f 22 e0 f4",
    vectors: [13],
    frameRip: 0x10005n,
  },
  // mov rax, cr0; btr eax, 31; mov cr0, rax; hlt
  {
    name: "clearing CR0.PG in 64-bit mode",
    mode: "long",
    code: "0f 20 c0 0f ba f0 1f 0f 22 c0 f4",
    vectors: [13],
  },
  // mov rax, cr0; bts eax, 29; btr eax, 30; mov cr0, rax; hlt
  {
    name: "CR0.NW without CR0.CD",
    mode: "protected",
    code: "0f 20 c0 0f ba e8 1d 0f ba f0 1e 0f 22 c0 f4",
    vectors: [13],
  },
  // mov rax, cr3; bts rax, 63; mov cr3, rax; hlt
  {
    name: "CR3 bit 63 without CR4.PCIDE",
    mode: "long",
    code: "0f 20 d8 48 0f ba e8 3f 0f 22 d8 f4",
    vectors: [13],
    nestedDiffers: `${TCG} takes the value and kvm_amd's next VMRUN fails`,
  },
  // mov ecx, 0xc0000080; rdmsr; or eax, 2; wrmsr; hlt
  { name: "EFER bit 1", mode: "long", code: "b9 80 00 00 c0 0f 32 83 c8 02 0f 30 f4", vectors: [13] },
  // mov ecx, 0xc0000080; rdmsr; btr eax, 8; wrmsr; hlt
  {
    name: "EFER.LME cleared with paging on",
    mode: "long",
    code: "b9 80 00 00 c0 0f 32 0f ba f0 08 0f 30 f4",
    vectors: [13],
  },
  // the example: mov ecx, 0x277; mov eax, 2; mov edx, 0; wrmsr; hlt
  {
    name: "IA32_PAT with a reserved memory type (protected mode)",
    mode: "protected",
    code: "b9 77 02 00 00 b8 02 00 00 00 ba 00 00 00 00 0f 30 f4",
    vectors: [13],
    frameRip: 0x1000fn,
  },
  // mov ecx, 0xc0000100; xor eax, eax; mov edx, 0x8000; wrmsr; hlt
  {
    name: "FS_BASE non-canonical",
    mode: "long",
    code: "b9 00 01 00 c0 31 c0 ba 00 80 00 00 0f 30 f4",
    vectors: [13],
    nestedDiffers: `${TCG} does not check the canonical form (SVM passes FS_BASE through)`,
  },
  // xor ecx, ecx; xgetbv; hlt (the loader leaves CR4.OSXSAVE clear)
  {
    name: "XGETBV with CR4.OSXSAVE = 0",
    mode: "long",
    code: "31 c9 0f 01 d0 f4",
    vectors: [6],
    frameRip: 0x10002n,
  },
  // mov rax, 0x800000000000; mov [0x7002], rax; mov word [0x7000], 0xfff; lgdt [0x7000]; hlt
  {
    name: "LGDT of a non-canonical base",
    mode: "long",
    code: "48 b8 00 00 00 00 00 80 00 00 48 89 04 25 02 70 00 00 66 c7 04 25 00 70 00 00 ff 0f 0f 01 14 25 00 70 00 00 f4",
    vectors: [13],
    frameRip: 0x1001cn,
    nestedDiffers: `${TCG} does not check the canonical form of LGDT's base`,
  },
  // mov rax, 0x800000000000; jmp rax
  {
    name: "JMP to 0x800000000000",
    mode: "long",
    code: "48 b8 00 00 00 00 00 80 00 00 ff e0",
    vectors: [13],
    frameRip: 0x1000an,
    amdDiffers: "AMD CPUs fault at the target (frame RIP 0x800000000000), Intel's at the branch",
  },
  // mov rax, dr7; bts rax, 32; mov dr7, rax; hlt
  { name: "DR7 bit 32", mode: "long", code: "0f 21 f8 48 0f ba e8 20 0f 23 f8 f4", vectors: [13] },
  // mov ax, [0xffff]; hlt (real mode, DS = CS = 0x1000)
  {
    name: "a word at DS:0xFFFF in real mode",
    mode: "real",
    code: "a1 ff ff f4",
    vectors: [13],
    frameRip: 0n,
    nestedDiffers: `${TCG} does not check real-mode segment limits`,
  },
];
