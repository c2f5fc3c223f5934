// Public surface of the x86 interpreter.
//
// - `new Interpreter()` starts in the x86 reset state: real mode, CS.selector 0xF000, CS.base
//   0xFFFF0000, RIP 0xFFF0, EFLAGS 2, CR0 0x60000010. Set `hooks` (the VMX layer's, or
//   createBareHooks) before run(); run() without hooks throws CpuConfigError.
// - run(budget) returns a StopReason; `retired` counts instructions; `udCounts`/`udTotal` count
//   #UDs raised for opcodes the interpreter does not implement (index: op, 0x100|op for 0F op).
// - instructionLength(bytes, offset, bits) returns the length, or -1 (never throws) for encodings
//   it does not decode (VEX/EVEX/XOP/3DNow!, undefined opcodes, truncated input, > 15 bytes).
// - several interpreters in worker threads over one SharedArrayBuffer guest memory: the backend
//   makes one createSharedMemoryState(guestPhysBytes, vcpus), posts it to every worker, and each
//   calls interpreter.attachSharedMemory(state, vcpuIndex) before its first run()
//   (smp-memory.ts, smp-atomic.ts, code-coherence.ts); noteHostWrite(state, gpa, length) after
//   device (DMA) or host writes to guest memory.
export { type BareExit, type BareHandlers, type BareHooks, createBareHooks } from "./bare-hooks.js";
export { bumpCodeGeneration, noteHostWrite } from "./code-coherence.js";
export {
  type ControlState,
  CR4_OFFERED,
  canonicalBig,
  cr0Fault,
  cr0Stored,
  cr3Fault,
  cr4Fault,
  eferFault,
  eferStored,
  patValid,
} from "./control-checks.js";
export { cpuidModel } from "./cpuid.js";
export { CpuConfigError, CpuFault } from "./faults.js";
export * from "./guest-cpu.js";
export * from "./hooks.js";
export { Cr0, Cr4, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, Interpreter } from "./interpreter.js";
export { instructionLength } from "./length.js";
export { MSR } from "./msr.js";
export { createSharedMemoryState, type SharedMemoryState } from "./smp-memory.js";
