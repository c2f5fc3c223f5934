// What lib/kvm asks of a system-call binding: the contract both the addon and koffi implement
// (binding.ts picks one; koffi-binding.ts is the other). Types only, so the bindings and their
// checks depend on this file rather than on the module that loads them.

export type IoctlArg = number | bigint | ArrayBuffer | ArrayBufferView;
export type BindingKind = "addon" | "koffi";

/**
 * The same functions from both bindings. Errors are Error objects carrying Node's system-error
 * fields: code (errno name), errno (negative), syscall, and request (the KVM ioctl's name).
 */
export interface KvmBinding {
  readonly kind: BindingKind;
  /** true when kick() interrupts a KVM_RUN blocked in another thread (the addon; koffi cannot signal) */
  readonly crossThreadKick: boolean;
  open(path: string, flags?: number): number;
  close(fd: number): void;
  /** only the KVM ioctls of lib/kvm/ioctls.ts; pointer arguments are size-checked against the request */
  ioctl(fd: number, request: number, arg?: IoctlArg): number;
  /** a shared mapping of fd as an ArrayBuffer (kvm_run: the vCPU fd at offset 0) */
  mmap(fd: number, length: number, offset: number): ArrayBuffer;
  /** private zeroed memory, e.g. guest RAM */
  mmapAnonymous(length: number): ArrayBuffer;
  /** ends a mapping; every view of it then reads as empty (addon) or as inert zeroes (koffi) */
  munmap(buffer: ArrayBuffer): void;
  eventfd(initval?: number, flags?: number): number;
  /** KVM_RUN: true when the guest exited (reason in kvm_run), false when interrupted (EINTR/EAGAIN) */
  run(vcpuFd: number): boolean;
  /** makes the KVM_RUN in progress, or the next one, return false */
  kick(vcpuFd: number): void;
  /** memory must be an ArrayBuffer from mmap/mmapAnonymous; null deletes the slot */
  setUserMemoryRegion(
    vmFd: number,
    slot: number,
    flags: number,
    guestPhysAddr: number | bigint,
    memory: ArrayBuffer | null,
  ): void;
  getDirtyLog(vmFd: number, slot: number, bitmap: ArrayBuffer | ArrayBufferView): void;
}
