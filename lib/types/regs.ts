// Register state as users see it, with the same field names on both backends (they mirror
// kvm_regs / kvm_sregs: the KVM backend maps 1:1, the soft backend fills them from the VMCS
// guest-state area plus the interpreter's general registers). A leaf module: kvm/, boot/, inspect/
// and vmm/ all speak these types without importing one another.

/** General registers, RIP and RFLAGS, as kvm_regs names them (the same on both backends). */
export interface Regs {
  /** RAX (EAX is its low 32 bits). */
  rax: bigint;
  /** RBX (EBX is its low 32 bits). */
  rbx: bigint;
  /** RCX (ECX is its low 32 bits). */
  rcx: bigint;
  /** RDX (EDX is its low 32 bits). */
  rdx: bigint;
  /** RSI (ESI is its low 32 bits). */
  rsi: bigint;
  /** RDI (EDI is its low 32 bits). */
  rdi: bigint;
  /** RSP (ESP is its low 32 bits). */
  rsp: bigint;
  /** RBP (EBP is its low 32 bits). */
  rbp: bigint;
  /** R8, 64 bits. */
  r8: bigint;
  /** R9, 64 bits. */
  r9: bigint;
  /** R10, 64 bits. */
  r10: bigint;
  /** R11, 64 bits. */
  r11: bigint;
  /** R12, 64 bits. */
  r12: bigint;
  /** R13, 64 bits. */
  r13: bigint;
  /** R14, 64 bits. */
  r14: bigint;
  /** R15, 64 bits. */
  r15: bigint;
  /** The instruction pointer (an offset in CS; the linear address is cs.base + rip). */
  rip: bigint;
  /** RFLAGS; bit 1 is always set. Writes with reserved bits set are refused (RegisterValueError). */
  rflags: bigint;
}

/** A segment register's visible and hidden parts, as kvm_segment has them. */
export interface Segment {
  /** Segment base address. */
  base: bigint;
  /** Segment limit in bytes, byte-granular (already scaled when G is set): the last valid offset. */
  limit: number;
  /** The selector (`index << 3 | TI << 2 | RPL`). */
  selector: number;
  /** descriptor type (4 bits) */
  type: number;
  /** Present (P) bit. */
  present: boolean;
  /** Descriptor privilege level, 0 to 3. */
  dpl: number;
  /** default operation size (D/B) */
  db: boolean;
  /** code/data (1) vs system (0) */
  s: boolean;
  /** 64-bit code segment */
  l: boolean;
  /** granularity */
  g: boolean;
  /** The AVL bit (free for software). */
  avl: boolean;
  /** Unusable (a null selector was loaded): VMX's "segment unusable", KVM's unusable flag. */
  unusable: boolean;
}

/** GDTR or IDTR. */
export interface DescriptorTable {
  /** Linear base address of the table. */
  base: bigint;
  /** Table limit in bytes (size - 1), 16 bits. */
  limit: number;
}

/** Segment registers, descriptor tables, control registers, EFER and the APIC base, as kvm_sregs names them. */
export interface SpecialRegs {
  /** Code segment. */
  cs: Segment;
  /** Data segment. */
  ds: Segment;
  /** Extra segment. */
  es: Segment;
  /** FS segment (base often holds TLS). */
  fs: Segment;
  /** GS segment. */
  gs: Segment;
  /** Stack segment. */
  ss: Segment;
  /** Task register (the TSS). */
  tr: Segment;
  /** Local descriptor table register. */
  ldt: Segment;
  /** Global descriptor table register (GDTR). */
  gdt: DescriptorTable;
  /** Interrupt descriptor table register (IDTR). */
  idt: DescriptorTable;
  /** CR0 (PE, PG, ...; decodeCr0 names the bits). */
  cr0: bigint;
  /** CR2: the linear address of the last page fault. */
  cr2: bigint;
  /** CR3: the page-table root (and PCID when CR4.PCIDE). */
  cr3: bigint;
  /** CR4 (PAE, PGE, VMXE, ...; decodeCr4 names the bits). */
  cr4: bigint;
  /** CR8: the task-priority class, TPR bits 7:4. */
  cr8: bigint;
  /** IA32_EFER (SCE, LME, LMA, NXE; decodeEfer names the bits). */
  efer: bigint;
  /** IA32_APIC_BASE: the local APIC's base address and its enable/BSP/x2APIC bits. */
  apicBase: bigint;
}

/** The 16 general registers' names in encoding order (ModRM register numbers 0-15). */
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
