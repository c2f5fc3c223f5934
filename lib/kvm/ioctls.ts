// KVM ioctl request numbers, computed the way <asm-generic/ioctl.h> does (dir:2 size:14 type:8 nr:8),
// with the struct sizes the x86-64 ABI gives. Checked against the C compiler in test/binding/abi.test.ts.

const KVMIO = 0xae;
const NONE = 0;
const WRITE = 1;
const READ = 2;

function ioc(dir: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number) => ioc(NONE, nr, 0);
const ior = (nr: number, size: number) => ioc(READ, nr, size);
const iow = (nr: number, size: number) => ioc(WRITE, nr, size);
const iowr = (nr: number, size: number) => ioc(READ | WRITE, nr, size);

/** ioctl KVM_GET_API_VERSION: _IO(KVMIO, 0x00). */
export const KVM_GET_API_VERSION = io(0x00);
/** ioctl KVM_CREATE_VM: _IO(KVMIO, 0x01). */
export const KVM_CREATE_VM = io(0x01);
/** ioctl KVM_GET_MSR_INDEX_LIST: _IOWR(KVMIO, 0x02) with a 4-byte argument. */
export const KVM_GET_MSR_INDEX_LIST = iowr(0x02, 4);
/** ioctl KVM_CHECK_EXTENSION: _IO(KVMIO, 0x03). */
export const KVM_CHECK_EXTENSION = io(0x03);
/** ioctl KVM_GET_VCPU_MMAP_SIZE: _IO(KVMIO, 0x04). */
export const KVM_GET_VCPU_MMAP_SIZE = io(0x04);
/** ioctl KVM_GET_SUPPORTED_CPUID: _IOWR(KVMIO, 0x05) with a 8-byte argument. */
export const KVM_GET_SUPPORTED_CPUID = iowr(0x05, 8);
/** ioctl KVM_GET_EMULATED_CPUID: _IOWR(KVMIO, 0x09) with a 8-byte argument. */
export const KVM_GET_EMULATED_CPUID = iowr(0x09, 8);
/** ioctl KVM_GET_MSR_FEATURE_INDEX_LIST: _IOWR(KVMIO, 0x0a) with a 4-byte argument. */
export const KVM_GET_MSR_FEATURE_INDEX_LIST = iowr(0x0a, 4);
/** ioctl KVM_CREATE_VCPU: _IO(KVMIO, 0x41). */
export const KVM_CREATE_VCPU = io(0x41);
/** ioctl KVM_GET_DIRTY_LOG: _IOW(KVMIO, 0x42) with a 16-byte argument. */
export const KVM_GET_DIRTY_LOG = iow(0x42, 16);
/** ioctl KVM_SET_USER_MEMORY_REGION: _IOW(KVMIO, 0x46) with a 32-byte argument. */
export const KVM_SET_USER_MEMORY_REGION = iow(0x46, 32);
/** ioctl KVM_SET_TSS_ADDR: _IO(KVMIO, 0x47). */
export const KVM_SET_TSS_ADDR = io(0x47);
/** ioctl KVM_SET_IDENTITY_MAP_ADDR: _IOW(KVMIO, 0x48) with a 8-byte argument. */
export const KVM_SET_IDENTITY_MAP_ADDR = iow(0x48, 8);
/** ioctl KVM_CREATE_IRQCHIP: _IO(KVMIO, 0x60). */
export const KVM_CREATE_IRQCHIP = io(0x60);
/** ioctl KVM_IRQ_LINE: _IOW(KVMIO, 0x61) with a 8-byte argument. */
export const KVM_IRQ_LINE = iow(0x61, 8);
/** ioctl KVM_SET_GSI_ROUTING: _IOW(KVMIO, 0x6a) with a 8-byte argument. */
export const KVM_SET_GSI_ROUTING = iow(0x6a, 8);
/** ioctl KVM_IRQ_LINE_STATUS: _IOWR(KVMIO, 0x67) with a 8-byte argument. */
export const KVM_IRQ_LINE_STATUS = iowr(0x67, 8);
/** struct kvm_coalesced_mmio_zone: u64 addr, u32 size, u32 pio */
export const KVM_REGISTER_COALESCED_MMIO = iow(0x67, 16);
/** ioctl KVM_UNREGISTER_COALESCED_MMIO: _IOW(KVMIO, 0x68) with a 16-byte argument. */
export const KVM_UNREGISTER_COALESCED_MMIO = iow(0x68, 16);
/** ioctl KVM_IRQFD: _IOW(KVMIO, 0x76) with a 32-byte argument. */
export const KVM_IRQFD = iow(0x76, 32);
/** ioctl KVM_CREATE_PIT2: _IOW(KVMIO, 0x77) with a 64-byte argument. */
export const KVM_CREATE_PIT2 = iow(0x77, 64);
/** ioctl KVM_IOEVENTFD: _IOW(KVMIO, 0x79) with a 64-byte argument. */
export const KVM_IOEVENTFD = iow(0x79, 64);
/** ioctl KVM_SET_CLOCK: _IOW(KVMIO, 0x7b) with a 48-byte argument. */
export const KVM_SET_CLOCK = iow(0x7b, 48);
/** ioctl KVM_GET_CLOCK: _IOR(KVMIO, 0x7c) with a 48-byte argument. */
export const KVM_GET_CLOCK = ior(0x7c, 48);
/** ioctl KVM_RUN: _IO(KVMIO, 0x80). */
export const KVM_RUN = io(0x80);
/** ioctl KVM_GET_REGS: _IOR(KVMIO, 0x81) with a 144-byte argument. */
export const KVM_GET_REGS = ior(0x81, 144);
/** ioctl KVM_SET_REGS: _IOW(KVMIO, 0x82) with a 144-byte argument. */
export const KVM_SET_REGS = iow(0x82, 144);
/** ioctl KVM_GET_SREGS: _IOR(KVMIO, 0x83) with a 312-byte argument. */
export const KVM_GET_SREGS = ior(0x83, 312);
/** ioctl KVM_SET_SREGS: _IOW(KVMIO, 0x84) with a 312-byte argument. */
export const KVM_SET_SREGS = iow(0x84, 312);
/** ioctl KVM_TRANSLATE: _IOWR(KVMIO, 0x85) with a 24-byte argument. */
export const KVM_TRANSLATE = iowr(0x85, 24);
/** ioctl KVM_INTERRUPT: _IOW(KVMIO, 0x86) with a 4-byte argument. */
export const KVM_INTERRUPT = iow(0x86, 4);
/** ioctl KVM_GET_MSRS: _IOWR(KVMIO, 0x88) with a 8-byte argument. */
export const KVM_GET_MSRS = iowr(0x88, 8);
/** ioctl KVM_SET_MSRS: _IOW(KVMIO, 0x89) with a 8-byte argument. */
export const KVM_SET_MSRS = iow(0x89, 8);
/** ioctl KVM_SET_SIGNAL_MASK: _IOW(KVMIO, 0x8b) with a 4-byte argument. */
export const KVM_SET_SIGNAL_MASK = iow(0x8b, 4);
/** ioctl KVM_GET_FPU: _IOR(KVMIO, 0x8c) with a 416-byte argument. */
export const KVM_GET_FPU = ior(0x8c, 416);
/** ioctl KVM_SET_FPU: _IOW(KVMIO, 0x8d) with a 416-byte argument. */
export const KVM_SET_FPU = iow(0x8d, 416);
/** ioctl KVM_GET_LAPIC: _IOR(KVMIO, 0x8e) with a 1024-byte argument. */
export const KVM_GET_LAPIC = ior(0x8e, 1024);
/** ioctl KVM_SET_LAPIC: _IOW(KVMIO, 0x8f) with a 1024-byte argument. */
export const KVM_SET_LAPIC = iow(0x8f, 1024);
/** ioctl KVM_SET_CPUID2: _IOW(KVMIO, 0x90) with a 8-byte argument. */
export const KVM_SET_CPUID2 = iow(0x90, 8);
/** ioctl KVM_GET_CPUID2: _IOWR(KVMIO, 0x91) with a 8-byte argument. */
export const KVM_GET_CPUID2 = iowr(0x91, 8);
/** ioctl KVM_GET_MP_STATE: _IOR(KVMIO, 0x98) with a 4-byte argument. */
export const KVM_GET_MP_STATE = ior(0x98, 4);
/** ioctl KVM_SET_MP_STATE: _IOW(KVMIO, 0x99) with a 4-byte argument. */
export const KVM_SET_MP_STATE = iow(0x99, 4);
/** ioctl KVM_NMI: _IO(KVMIO, 0x9a). */
export const KVM_NMI = io(0x9a);
/** ioctl KVM_SET_GUEST_DEBUG: _IOW(KVMIO, 0x9b) with a 72-byte argument. */
export const KVM_SET_GUEST_DEBUG = iow(0x9b, 72);
/** ioctl KVM_GET_VCPU_EVENTS: _IOR(KVMIO, 0x9f) with a 64-byte argument. */
export const KVM_GET_VCPU_EVENTS = ior(0x9f, 64);
/** ioctl KVM_SET_VCPU_EVENTS: _IOW(KVMIO, 0xa0) with a 64-byte argument. */
export const KVM_SET_VCPU_EVENTS = iow(0xa0, 64);
/** ioctl KVM_GET_DEBUGREGS: _IOR(KVMIO, 0xa1) with a 128-byte argument. */
export const KVM_GET_DEBUGREGS = ior(0xa1, 128);
/** ioctl KVM_SET_DEBUGREGS: _IOW(KVMIO, 0xa2) with a 128-byte argument. */
export const KVM_SET_DEBUGREGS = iow(0xa2, 128);
/** ioctl KVM_SET_TSC_KHZ: _IO(KVMIO, 0xa2). */
export const KVM_SET_TSC_KHZ = io(0xa2);
/** ioctl KVM_GET_TSC_KHZ: _IO(KVMIO, 0xa3). */
export const KVM_GET_TSC_KHZ = io(0xa3);
/** ioctl KVM_GET_XCRS: _IOR(KVMIO, 0xa6) with a 392-byte argument. */
export const KVM_GET_XCRS = ior(0xa6, 392);
/** ioctl KVM_SET_XCRS: _IOW(KVMIO, 0xa7) with a 392-byte argument. */
export const KVM_SET_XCRS = iow(0xa7, 392);
/** ioctl KVM_ENABLE_CAP: _IOW(KVMIO, 0xa3) with a 104-byte argument. */
export const KVM_ENABLE_CAP = iow(0xa3, 104);
/** struct kvm_irqchip: u32 chip_id, u32 pad, a 512-byte union (kvm_pic_state / kvm_ioapic_state) */
export const KVM_GET_IRQCHIP = iowr(0x62, 520);
/** _IOR although the kernel reads it: `linux/kvm.h` has it so */
export const KVM_SET_IRQCHIP = ior(0x63, 520);
/** ioctl KVM_GET_PIT2: _IOR(KVMIO, 0x9f) with a 112-byte argument. */
export const KVM_GET_PIT2 = ior(0x9f, 112);
/** ioctl KVM_SET_PIT2: _IOW(KVMIO, 0xa0) with a 112-byte argument. */
export const KVM_SET_PIT2 = iow(0xa0, 112);
/** ioctl KVM_GET_XSAVE: _IOR(KVMIO, 0xa4) with a 4096-byte argument. */
export const KVM_GET_XSAVE = ior(0xa4, 4096);
/** ioctl KVM_SET_XSAVE: _IOW(KVMIO, 0xa5) with a 4096-byte argument. */
export const KVM_SET_XSAVE = iow(0xa5, 4096);

/** Every request above by name (error messages, the table check). */
export const KVM_IOCTLS: Readonly<Record<string, number>> = {
  KVM_GET_API_VERSION,
  KVM_CREATE_VM,
  KVM_GET_MSR_INDEX_LIST,
  KVM_CHECK_EXTENSION,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_EMULATED_CPUID,
  KVM_GET_MSR_FEATURE_INDEX_LIST,
  KVM_CREATE_VCPU,
  KVM_GET_DIRTY_LOG,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_TSS_ADDR,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_CREATE_IRQCHIP,
  KVM_IRQ_LINE,
  KVM_SET_GSI_ROUTING,
  KVM_IRQ_LINE_STATUS,
  KVM_REGISTER_COALESCED_MMIO,
  KVM_UNREGISTER_COALESCED_MMIO,
  KVM_IRQFD,
  KVM_CREATE_PIT2,
  KVM_IOEVENTFD,
  KVM_SET_CLOCK,
  KVM_GET_CLOCK,
  KVM_RUN,
  KVM_GET_REGS,
  KVM_SET_REGS,
  KVM_GET_SREGS,
  KVM_SET_SREGS,
  KVM_TRANSLATE,
  KVM_INTERRUPT,
  KVM_GET_MSRS,
  KVM_SET_MSRS,
  KVM_SET_SIGNAL_MASK,
  KVM_GET_FPU,
  KVM_SET_FPU,
  KVM_GET_LAPIC,
  KVM_SET_LAPIC,
  KVM_SET_CPUID2,
  KVM_GET_CPUID2,
  KVM_GET_MP_STATE,
  KVM_SET_MP_STATE,
  KVM_NMI,
  KVM_SET_GUEST_DEBUG,
  KVM_GET_VCPU_EVENTS,
  KVM_SET_VCPU_EVENTS,
  KVM_GET_DEBUGREGS,
  KVM_SET_DEBUGREGS,
  KVM_SET_TSC_KHZ,
  KVM_GET_TSC_KHZ,
  KVM_GET_XCRS,
  KVM_SET_XCRS,
  KVM_ENABLE_CAP,
  KVM_GET_IRQCHIP,
  KVM_SET_IRQCHIP,
  KVM_GET_PIT2,
  KVM_SET_PIT2,
  KVM_GET_XSAVE,
  KVM_SET_XSAVE,
};

const NAMES = new Map(Object.entries(KVM_IOCTLS).map(([k, v]) => [v, k]));

/**
 * The KVM_* name of an ioctl request number (for error messages), or undefined for one lib/kvm does not use.
 */
export function ioctlName(request: number): string | undefined {
  return NAMES.get(request);
}

/** Size the kernel reads/writes through the argument pointer (the _IOC_SIZE field). */
export function ioctlSize(request: number): number {
  return (request >>> 16) & 0x3fff;
}

/** True when the request passes its argument by pointer (_IOC_DIR != NONE). */
export function ioctlHasPointer(request: number): boolean {
  return request >>> 30 !== 0;
}
