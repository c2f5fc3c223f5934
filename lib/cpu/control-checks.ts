// What a write to CR0, CR3, CR4, EFER and XCR0 may hold: the #GP(0) rules of MOV to CRn (Intel SDM
// Vol. 2B "MOV—Move to/from Control Registers", Vol. 3A 2.5 "Control Registers"), WRMSR IA32_EFER
// (Vol. 3A 2.2.1) and XSETBV (Vol. 2C). Shared by the interpreter and by the soft hypervisor, which
// emulates the same writes after a CR-access or WRMSR exit: a value either one let through would be
// written to the VMCS and fail the next VM entry instead of faulting in the guest.
// Each check returns why the write faults (for tests and traces), or undefined when it is allowed.

/** physical-address width the CPU reports (CPUID 0x80000008 EAX[7:0]), the VMX layer's MAXPHYADDR */
export const MAXPHYADDR = 39;

/** CR0 bits that exist; the other bits of 31:0 are ignored on write (read as 0), 63:32 are #GP */
export const CR0_DEFINED = 0xe005003f;
export const CR0_PE = 1;
export const CR0_ET = 0x10;
export const CR0_NW = 0x20000000;
export const CR0_CD = 0x40000000;
export const CR0_PG = 0x80000000;

/** CR4.UMIP, CR4.SMEP, CR4.SMAP: CPUID.7.0 offers them (ECX[2], EBX[7], EBX[20]); mmu.ts enforces them */
export const CR4_UMIP = 0x800;
export const CR4_SMEP = 0x100000;
export const CR4_SMAP = 0x200000;

/** CR4.PCIDE: CPUID.1:ECX[17] offers PCIDs (with INVPCID, CPUID.7.0:EBX[10]) */
export const CR4_PCIDE = 0x20000;

/** CR4.FSGSBASE: CPUID.7.0:EBX[0] offers RDFSBASE/RDGSBASE/WRFSBASE/WRGSBASE (exec-0f.ts) */
export const CR4_FSGSBASE = 0x10000;
/** CR4.PKE: CPUID.7.0:ECX[3] offers protection keys (mmu.ts, RDPKRU/WRPKRU in exec-0f.ts) */
export const CR4_PKE = 0x400000;

/**
 * CR4 bits this CPU offers: TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT, UMIP, FSGSBASE,
 * PCIDE, SMEP, SMAP, PKE. CPUID offers no VME (so no VME/PVI), LA57 or XSAVE: their bits are
 * reserved. VMXE is the VMX layer's own (it exits in non-root operation).
 */
export const CR4_OFFERED = 0x7fc | CR4_UMIP | CR4_FSGSBASE | CR4_SMEP | CR4_SMAP | CR4_PCIDE | CR4_PKE;
export const CR4_VMXE = 0x2000;
export const CR4_PAE = 0x20;
export const CR4_OSXSAVE = 0x40000;

export const EFER_SCE = 0x1;
export const EFER_LME = 0x100;
export const EFER_LMA = 0x400;
export const EFER_NXE = 0x800;
/** SCE, LME, LMA (read-only) and NXE: CPUID.80000001H offers SYSCALL, LM and NX */
export const EFER_DEFINED = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;

/** XCR0 components this CPU supports: x87 and SSE (no AVX or later state) */
export const XCR0_SUPPORTED = 3;

/** What the CR0 and EFER rules look at besides the value written. */
export interface ControlState {
  cr0: number;
  cr3Low: number;
  cr4: number;
  efer: number;
  /** CS.L: the current code segment is 64-bit (only meaningful with EFER.LMA) */
  csL: boolean;
  /** TR holds a 16-bit TSS (types 1 or 3) */
  tr16: boolean;
}

const inMode64 = (s: ControlState): boolean => (s.efer & EFER_LMA) !== 0 && s.csL;

/** MOV to CR0 of `lo` (bits 31:0) with `hi` (bits 63:32) */
export function cr0Fault(s: ControlState, lo: number, hi: number): string | undefined {
  if (hi !== 0) return "CR0 bits 63:32 set";
  const pg = (lo & CR0_PG) !== 0;
  if (pg && (lo & CR0_PE) === 0) return "CR0.PG without CR0.PE";
  if ((lo & CR0_NW) !== 0 && (lo & CR0_CD) === 0) return "CR0.NW without CR0.CD";
  const wasPg = (s.cr0 & CR0_PG) !== 0;
  if (pg && !wasPg && (s.efer & EFER_LME) !== 0) {
    // activating IA-32e mode
    if ((s.cr4 & CR4_PAE) === 0) return "IA-32e mode activation with CR4.PAE clear";
    if (s.csL) return "IA-32e mode activation with CS.L set";
    if (s.tr16) return "IA-32e mode activation with a 16-bit TSS in TR";
  }
  if (!pg && wasPg) {
    if (inMode64(s)) return "clearing CR0.PG in 64-bit mode";
    if ((s.cr4 & CR4_PCIDE) !== 0) return "clearing CR0.PG with CR4.PCIDE set";
  }
  return undefined;
}

/** the value MOV to CR0 stores: reserved bits of 31:0 dropped, ET hard-wired to 1 */
export const cr0Stored = (lo: number): number => ((lo & CR0_DEFINED) | CR0_ET) >>> 0;

/** MOV to CR4; `allowed` is CR4_OFFERED, plus VMXE where the caller implements VMX */
export function cr4Fault(s: ControlState, lo: number, hi: number, allowed: number): string | undefined {
  if (hi !== 0 || (lo & ~allowed) !== 0) return "CR4 reserved bit or a feature CPUID does not offer";
  const lma = (s.efer & EFER_LMA) !== 0;
  if (lma && (lo & CR4_PAE) === 0) return "clearing CR4.PAE in IA-32e mode";
  if ((lo & CR4_PCIDE) !== 0 && (s.cr4 & CR4_PCIDE) === 0 && (!lma || (s.cr3Low & 0xfff) !== 0)) {
    return "setting CR4.PCIDE outside IA-32e mode or with CR3[11:0] != 0";
  }
  return undefined;
}

/**
 * MOV to CR3 in IA-32e mode (outside it the operand is 32 bits, all of them valid): bits 63:MAXPHYADDR
 * are reserved, but for bit 63 with CR4.PCIDE set (SDM Vol. 3A 4.10.4.1: 1 there asks the load not to
 * invalidate the new PCID's translations; CR3 does not keep it: cr3Stored).
 */
export function cr3Fault(lma: boolean, hi: number, pcide = false): string | undefined {
  const reserved = ~((1 << (MAXPHYADDR - 32)) - 1) & (pcide ? 0x7fffffff : -1);
  if (lma && (hi & reserved) !== 0) return "CR3 bits above MAXPHYADDR set";
  return undefined;
}

/**
 * What MOV to CR3 of `hi`:`lo` stores: all 64 bits in IA-32e mode (bits 11:0 the PCID when
 * CR4.PCIDE is set, PWT and PCD otherwise) but for the PCID no-flush bit 63; bits 31:0 outside it.
 */
export function cr3Stored(lma: boolean, lo: number, hi: number): number {
  return lma ? (hi & 0x7fffffff) * 2 ** 32 + (lo >>> 0) : lo >>> 0;
}

/** WRMSR IA32_EFER of `value` while CR0 is `cr0` and EFER is `old` */
export function eferFault(old: number, value: bigint, cr0: number): string | undefined {
  if (value >> 32n !== 0n || (Number(value) & ~EFER_DEFINED) !== 0) return "EFER reserved bit set";
  if ((cr0 & CR0_PG) !== 0 && ((Number(value) ^ old) & EFER_LME) !== 0)
    return "EFER.LME changed with paging on";
  return undefined;
}

/** the value WRMSR IA32_EFER stores: LMA is read-only */
export const eferStored = (old: number, value: bigint): number =>
  ((Number(value) & ~EFER_LMA) | (old & EFER_LMA)) >>> 0;

/** XSETBV of EDX:EAX to XCR[ECX] */
export function xsetbvFault(ecx: number, eax: number, edx: number): string | undefined {
  if (ecx !== 0) return "XCR other than XCR0";
  if (edx !== 0 || (eax & ~XCR0_SUPPORTED) !== 0) return "XCR0 component not supported";
  if ((eax & 1) === 0) return "XCR0.x87 clear";
  if ((eax & 4) !== 0 && (eax & 2) === 0) return "XCR0.AVX without XCR0.SSE";
  return undefined;
}

/** canonical for 48-bit linear addresses; `lin` is a number in [-2^63, 2^64) */
export function canonicalNumber(lin: number): boolean {
  return (lin >= -0x800000000000 && lin < 0x800000000000) || lin >= 2 ** 64 - 0x800000000000;
}

/** canonical for 48-bit linear addresses, as a 64-bit unsigned or signed bigint */
export function canonicalBig(v: bigint): boolean {
  const s = BigInt.asIntN(64, v);
  return s >= -(1n << 47n) && s < 1n << 47n;
}

/** PAT and MTRR memory types: UC 0, WC 1, WT 4, WP 5, WB 6; UC- (7) in the PAT only */
const PAT_TYPES = 0b11110011;
const MTRR_TYPES = 0b01110011;

/** every byte of IA32_PAT names a memory type (SDM Vol. 3A 13.12.2: otherwise WRMSR is #GP(0)) */
export function patValid(v: bigint): boolean {
  return typesValid(v, 8, PAT_TYPES);
}

/** `count` bytes of `v` (from bit 0) are MTRR memory types */
export function mtrrTypesValid(v: bigint, count: number): boolean {
  return typesValid(v, count, MTRR_TYPES);
}

function typesValid(v: bigint, count: number, types: number): boolean {
  for (let i = 0; i < count; i++) {
    const t = Number((v >> BigInt(i * 8)) & 0xffn);
    if (t > 7 || ((types >>> t) & 1) === 0) return false;
  }
  return true;
}
