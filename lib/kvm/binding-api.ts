// What lib/kvm asks of a system-call binding: the contract both the addon and koffi implement
// (binding.ts picks one; koffi-binding.ts is the other). Types only, so the bindings and their
// checks depend on this file rather than on the module that loads them (its one value is the
// layout of koffi's shared run state, which both the binding and the kicking thread use).

/** An ioctl's argument: an integer, or a buffer the kernel reads or fills. */
export type IoctlArg = number | bigint | ArrayBuffer | ArrayBufferView;
/** "addon": the native Node-API addon; "koffi": libc called through koffi (when the addon is not built). */
export type BindingKind = "addon" | "koffi";

/** A cross-thread kick through the addon: its kick(vcpuFd) signals the thread in KVM_RUN itself. */
export interface AddonKickTarget {
  /** optional: the earlier `{addonPath, vcpuFd}` shape still means the addon */
  binding?: "addon";
  /** the addon file, loadable with require() in a worker */
  addonPath: string;
  /** The vCPU's file descriptor. */
  vcpuFd: number;
}

/**
 * A cross-thread kick through koffi: the kicking thread maps the vCPU's kvm_run itself (fds are
 * process-wide), sets immediate_exit and tgkill()s the thread the binding's run() recorded in
 * `shared` (Int32 words at KOFFI_KICK_WORDS).
 */
export interface KoffiKickTarget {
  /** Which binding made the target. */
  binding: "koffi";
  /** koffi's entry file: the kicking thread reaches libc (mmap, tgkill) through it */
  addonPath: string;
  /** The vCPU's file descriptor. */
  vcpuFd: number;
  /** the vCPU's run state, written by run() on the vCPU thread */
  shared: SharedArrayBuffer;
  /** the signal number kicks send (a handler is installed process-wide) */
  signal: number;
}

/** What another thread needs to kick a vCPU out of KVM_RUN (KvmBinding.kickTarget()). */
export type KickTarget = AddonKickTarget | KoffiKickTarget;

/** Int32 indices into KoffiKickTarget.shared */
export const KOFFI_KICK_WORDS = { IN_RUN: 0, PENDING: 1, TID: 2, COUNT: 3 } as const;

/**
 * The same functions from both bindings. Errors are Error objects carrying Node's system-error
 * fields: code (errno name), errno (negative), syscall, and request (the KVM ioctl's name).
 */
export interface KvmBinding {
  /** Which binding this is. */
  readonly kind: BindingKind;
  /**
   * true when a KVM_RUN blocked in one thread can be interrupted from another: the addon's kick()
   * works from any thread; koffi's state is per thread, so other threads kick through kickTarget()
   * (false for koffi when no kick signal handler could be installed, e.g. loaded first in a worker).
   */
  readonly crossThreadKick: boolean;
  /**
   * What another thread needs to kick this vCPU out of KVM_RUN (the watchdog's worker acts on it);
   * undefined when crossThreadKick is false. Throws a TypeError for an fd that is not a KVM vCPU.
   * Both bindings have it; optional only so that hand-made bindings (test fakes) may leave it out.
   */
  kickTarget?(vcpuFd: number): KickTarget | undefined;
  /** open(2): returns the file descriptor (flags default to read-write, close-on-exec). */
  open(path: string, flags?: number): number;
  /** close(2). */
  close(fd: number): void;
  /** only the KVM ioctls of lib/kvm/ioctls.ts; pointer arguments are size-checked against the request */
  ioctl(fd: number, request: number, arg?: IoctlArg): number;
  /**
   * a shared mapping of fd as an ArrayBuffer (kvm_run: the vCPU fd at offset 0). Only ranges with
   * something behind them: a vCPU fd this binding got from KVM_CREATE_VCPU (up to
   * KVM_GET_VCPU_MMAP_SIZE), or a regular file (up to its size); anything else is a TypeError,
   * a range past the end a RangeError, as touching such pages would raise SIGBUS.
   */
  mmap(fd: number, length: number, offset: number): ArrayBuffer;
  /** private zeroed memory, e.g. guest RAM */
  mmapAnonymous(length: number): ArrayBuffer;
  /**
   * ends a mapping; every view of it is then detached (addon: length 0, writes throw a TypeError) or
   * reaches only inert private pages (koffi, whose buffers cannot be detached: reads see zeroes or
   * what was written since, never the file, the guest or freed memory)
   */
  munmap(buffer: ArrayBuffer): void;
  /** eventfd(2): a new eventfd, for ioeventfd and irqfd. */
  eventfd(initval?: number, flags?: number): number;
  /** KVM_RUN: true when the guest exited (reason in kvm_run), false when interrupted (EINTR/EAGAIN) */
  run(vcpuFd: number): boolean;
  /**
   * makes the KVM_RUN in progress, or the next one, return false. The addon's works from any
   * thread; koffi's state is per thread, so another thread's run is kicked through kickTarget().
   * Harmless on an fd that is not a vCPU: only a vCPU's own kvm_run mapping is ever written.
   */
  kick(vcpuFd: number): void;
  /** memory must be an ArrayBuffer from mmap/mmapAnonymous; null deletes the slot */
  setUserMemoryRegion(
    vmFd: number,
    slot: number,
    flags: number,
    guestPhysAddr: number | bigint,
    memory: ArrayBuffer | null,
  ): void;
  /** KVM_GET_DIRTY_LOG: fills `bitmap` with one bit per page of `slot` written since the last call. */
  getDirtyLog(vmFd: number, slot: number, bitmap: ArrayBuffer | ArrayBufferView): void;
}
