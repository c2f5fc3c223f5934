// Numbers from <linux/kvm.h> that lib/kvm uses.

/** The KVM_GET_API_VERSION answer lib/kvm requires (every kernel with the stable KVM API answers 12). */
export const KVM_API_VERSION = 12;

/** kvm_run.exit_reason */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  NMI: 16,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
} as const;

/** kvm_run.io.direction: a guest IN. */
export const KVM_EXIT_IO_IN = 0;
/** kvm_run.io.direction: a guest OUT. */
export const KVM_EXIT_IO_OUT = 1;

/** KVM_CHECK_EXTENSION capabilities */
export const KVM_CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  PIT: 11,
  MP_STATE: 14,
  SYNC_MMU: 16,
  IOEVENTFD: 36,
  /** answers the page offset of the coalesced ring in the vCPU mapping (2 on x86) */
  COALESCED_MMIO: 15,
  COALESCED_PIO: 162,
  SET_IDENTITY_MAP_ADDR: 37,
  ADJUST_CLOCK: 39,
  IRQFD: 32,
  PIT2: 33,
  SET_GUEST_DEBUG: 23,
  VCPU_EVENTS: 41,
  DEBUGREGS: 50,
  XCRS: 56,
  XSAVE: 55,
  PIT_STATE2: 35,
  IMMEDIATE_EXIT: 136,
  MAX_VCPUS: 66,
  EXIT_HYPERCALL: 201,
} as const;

/** the one hypercall KVM_CAP_EXIT_HYPERCALL can hand to user space on x86 (`linux/kvm_para.h`) */
export const KVM_HC_MAP_GPA_RANGE = 12;

/** Memory-slot flag: track written pages for KVM_GET_DIRTY_LOG. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1;
/** Memory-slot flag: guest writes exit as MMIO (KVM_CAP_READONLY_MEM). */
export const KVM_MEM_READONLY = 2;

/** KVM_SET_GUEST_DEBUG control: debugging on. */
export const KVM_GUESTDBG_ENABLE = 0x1;
/** KVM_SET_GUEST_DEBUG control: exit after every instruction. */
export const KVM_GUESTDBG_SINGLESTEP = 0x2;
/** KVM_SET_GUEST_DEBUG control: INT3 exits to user space. */
export const KVM_GUESTDBG_USE_SW_BP = 0x10000;
/** KVM_SET_GUEST_DEBUG control: the given DR0-DR3/DR7 breakpoints exit to user space. */
export const KVM_GUESTDBG_USE_HW_BP = 0x20000;
/** KVM_SET_GUEST_DEBUG control: inject a #DB into the guest. */
export const KVM_GUESTDBG_INJECT_DB = 0x40000;
/** KVM_SET_GUEST_DEBUG control: inject a #BP into the guest. */
export const KVM_GUESTDBG_INJECT_BP = 0x80000;

/** KVM_IOEVENTFD flag: signal only for writes of `datamatch`. */
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1;
/** KVM_IOEVENTFD flag: the address is an I/O port. */
export const KVM_IOEVENTFD_FLAG_PIO = 2;
/** KVM_IOEVENTFD flag: remove the registration. */
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 4;
/** KVM_IRQFD flag: remove the registration. */
export const KVM_IRQFD_FLAG_DEASSIGN = 1;

/** KVM_CREATE_PIT2 flag: emulate a dummy port 0x61 (the PC speaker) in the kernel. */
export const KVM_PIT_SPEAKER_DUMMY = 1;

/** kvm_irq_routing_entry.type for a pin of the in-kernel irqchip */
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
/** the in-kernel irqchips a GSI can be routed to */
export const KVM_IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

/** KVM_GET_MP_STATE / KVM_SET_MP_STATE values. */
export const KVM_MP_STATE = {
  RUNNABLE: 0,
  UNINITIALIZED: 1,
  INIT_RECEIVED: 2,
  HALTED: 3,
  SIPI_RECEIVED: 4,
} as const;

/** kvm_cpuid_entry2 flag: the entry depends on the subleaf (`index`); the kernel's spelling. */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

/** kvm_vcpu_events.flags: which optional fields KVM_SET_VCPU_EVENTS takes */
export const KVM_VCPUEVENT_VALID = {
  NMI_PENDING: 0x1,
  SIPI_VECTOR: 0x2,
  SHADOW: 0x4,
  SMM: 0x8,
  PAYLOAD: 0x10,
  TRIPLE_FAULT: 0x20,
} as const;

/** kvm_vcpu_events.interrupt.shadow */
export const KVM_X86_SHADOW_INT = { MOV_SS: 0x1, STI: 0x2 } as const;

/** kvm_irqchip.chip_id for KVM_GET/SET_IRQCHIP */
export const KVM_IRQCHIP_ID = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

/** Upper bound of entries asked of KVM_GET_SUPPORTED_CPUID (KVM_MAX_CPUID_ENTRIES is 256). */
export const MAX_CPUID_ENTRIES = 256;
