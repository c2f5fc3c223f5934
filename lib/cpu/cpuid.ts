// The CPUID model the interpreter answers with when the hooks do not take CPUID: a GenuineIntel
// family-6 part advertising exactly what the interpreter implements.

import { CR4_PKE, MAXPHYADDR } from "./control-checks.js";

/**
 * [eax, ebx, ecx, edx] for leaf/subleaf; `cr4` is the asking CPU's, for the bits that reflect it
 * (OSPKE)
 */
export function cpuidModel(
  leaf: number,
  subleaf: number,
  apicId: number,
  cr4 = 0,
): [number, number, number, number] {
  switch (leaf >>> 0) {
    case 0:
      // "GenuineIntel": EBX EDX ECX
      return [0xd, 0x756e6547, 0x6c65746e, 0x49656e69];
    case 1: {
      const eax = 0x000306a9; // family 6 model 0x3a
      const ebx = (apicId << 24) | (1 << 16) | (8 << 8); // CLFLUSH line 64 bytes
      // ECX: SSE3? no. CX16 (13), PCID (17: CR4.PCIDE), POPCNT (23), hypervisor (31)
      const ecx = (1 << 13) | (1 << 17) | (1 << 23) | (1 << 31);
      // EDX: FPU TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV PAT PSE DE CLFSH MMX FXSR SSE SSE2
      const edx =
        (1 << 0) |
        (1 << 2) |
        (1 << 3) |
        (1 << 4) |
        (1 << 5) |
        (1 << 6) |
        (1 << 8) |
        (1 << 9) |
        (1 << 11) |
        (1 << 12) |
        (1 << 13) |
        (1 << 15) |
        (1 << 16) |
        (1 << 19) |
        (1 << 23) |
        (1 << 24) |
        (1 << 25) |
        (1 << 26);
      return [eax, ebx, ecx, edx];
    }
    case 7: {
      // subleaf 2, EDX: BHI_CTRL (4: IA32_SPEC_CTRL.BHI_DIS_S, which Linux sets rather than clear
      // the branch history in software at every system call)
      if (subleaf === 2) return [0, 0, 0, 1 << 4];
      if (subleaf !== 0) return [0, 0, 0, 0];
      // EBX: FSGSBASE (0), IA32_TSC_ADJUST (1), SMEP (7), INVPCID (10), SMAP (20: also STAC/CLAC);
      // ECX: UMIP (2), PKU (3), OSPKE (4: CR4.PKE as the OS set it), RDPID (22);
      // EDX: IBRS/IBPB (26: IA32_SPEC_CTRL, IA32_PRED_CMD), IA32_ARCH_CAPABILITIES (29). mmu.ts
      // enforces SMEP/SMAP and protection keys, exec-0f.ts UMIP, INVPCID, RDPID, RDPKRU/WRPKRU and
      // the FS/GS base instructions; msr.ts has the MSRs.
      const ebx = (1 << 0) | (1 << 1) | (1 << 7) | (1 << 10) | (1 << 20);
      const ospke = (cr4 & CR4_PKE) !== 0 ? 1 << 4 : 0;
      // EAX: the highest subleaf (2)
      return [2, ebx, (1 << 2) | (1 << 3) | ospke | (1 << 22), (1 << 26) | (1 << 29)];
    }
    case 0xd:
      // XSAVE is not advertised; leaf kept so the max-leaf value is honest
      return [0, 0, 0, 0];
    case 0x40000000:
      // "nodevmm soft" hypervisor signature (the hypervisor bit is set in leaf 1)
      return [0x40000000, 0x65646f6e, 0x206d6d76, 0x74666f73];
    case 0x80000000:
      return [0x80000008, 0, 0, 0];
    case 0x80000001:
      // ECX: LAHF/SAHF (0), ABM/LZCNT (5); EDX: SYSCALL (11), NX (20), RDTSCP (27), LM (29)
      return [0, 0, (1 << 0) | (1 << 5), (1 << 11) | (1 << 20) | (1 << 27) | (1 << 29)];
    case 0x80000002:
      return str("nodevmm soft x86");
    case 0x80000003:
      return str(" interpreter    ");
    case 0x80000004:
      return str("                ");
    case 0x80000008:
      // 48-bit linear, 39-bit physical addresses: the MAXPHYADDR the VMX layer (and EPT) uses, so a
      // CR3 or page-table entry the guest may hold is one a VM entry accepts
      return [0x3000 | MAXPHYADDR, 0, 0, 0];
    default:
      void subleaf;
      return [0, 0, 0, 0];
  }
}

function str(s: string): [number, number, number, number] {
  const out: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 16; i++) out[i >> 2] |= (s.charCodeAt(i) & 0xff) << ((i & 3) * 8);
  return out;
}
