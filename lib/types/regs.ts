// Register state as users see it, with the same field names on both backends (they mirror
// kvm_regs / kvm_sregs: the KVM backend maps 1:1, the soft backend fills them from the VMCS
// guest-state area plus the interpreter's general registers). A leaf module: kvm/, boot/, inspect/
// and vmm/ all speak these types without importing one another.

export interface Regs {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
}

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  /** descriptor type (4 bits) */
  type: number;
  present: boolean;
  dpl: number;
  /** default operation size (D/B) */
  db: boolean;
  /** code/data (1) vs system (0) */
  s: boolean;
  /** 64-bit code segment */
  l: boolean;
  /** granularity */
  g: boolean;
  avl: boolean;
  unusable: boolean;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

export interface SpecialRegs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
}

export const GPR_NAMES = [
  "rax",
  "rcx",
  "rdx",
  "rbx",
  "rsp",
  "rbp",
  "rsi",
  "rdi",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const;

/**
 * General registers all zero, RFLAGS 2 (bit 1 always reads as one): the base that entry states and
 * tests spread the few registers they care about over.
 */
export function emptyRegs(): Regs {
  return {
    rax: 0n,
    rbx: 0n,
    rcx: 0n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0n,
    rflags: 2n,
  };
}

/**
 * A usable segment: by default a present, accessed read/write data segment at 0 with a 64 KiB limit
 * (what real mode has); `fields` overrides any of that.
 */
export function segment(fields: Partial<Segment> = {}): Segment {
  return {
    base: 0n,
    limit: 0xffff,
    selector: 0,
    type: 3,
    present: true,
    dpl: 0,
    db: false,
    s: true,
    l: false,
    g: false,
    avl: false,
    unusable: false,
    ...fields,
  };
}
