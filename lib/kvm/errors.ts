// Errors lib/kvm throws: values a user can act on, not raw errno strings. Each is a VmmError
// (lib/types/errors.ts, below every layer) with a stable `code`; KvmError's `code` is the errno name,
// as Node's own system errors carry it.

import { VmmError, VmmRangeError } from "../types/errors.js";

/** Why /dev/kvm cannot be used: missing device, no permission, wrong API version, no binding. */
export type KvmUnavailableReason = "missing" | "permission" | "api-version" | "no-binding";

/** /dev/kvm cannot be used here; `reason` says why and `hint` what to do about it. */
export class KvmUnavailableError extends VmmError {
  /** Always "KvmUnavailableError" (the class name, for people). */
  override name = "KvmUnavailableError";
  /** Always "ERR_VMM_KVM_UNAVAILABLE": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_KVM_UNAVAILABLE";
  constructor(
    /** what is wrong, to branch on */
    readonly reason: KvmUnavailableReason,
    message: string,
    /** what a person can do about it (load the module, join the kvm group, ...) */
    readonly hint?: string,
    /** the KVM_GET_API_VERSION answer when that was the problem */
    readonly apiVersion?: number,
  ) {
    super(hint ? `${message} (${hint})` : message);
  }
}

/**
 * A KVM system call failed. Carries Node's system-error fields: `code` is the errno name (`ENXIO`,
 * `EINVAL`: stable for each errno, as `err.code` of Node's own system errors), `errno` its number,
 * `syscall` and, for an ioctl, the `request` by name.
 */
export class KvmError extends VmmError {
  /** Always "KvmError" (the class name, for people). */
  override name = "KvmError";
  constructor(
    message: string,
    /** The errno name, e.g. "ENXIO" or "EINVAL" (stable for each errno). */
    override readonly code: string,
    /** The errno number. */
    readonly errno: number,
    /** The call that failed ("ioctl", "open", "mmap", ...). */
    readonly syscall: string,
    /** For an ioctl, the request's name (e.g. "KVM_RUN"). */
    readonly request?: string,
  ) {
    super(message);
  }
}

/** An object of the Kvm, KvmVm, KvmVcpu chain was used after it (or its owner) was closed. */
export class KvmClosedError extends VmmError {
  /** Always "KvmClosedError" (the class name, for people). */
  override name = "KvmClosedError";
  /** Always "ERR_VMM_KVM_CLOSED": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_KVM_CLOSED";
  constructor(what: string) {
    super(`${what} is closed`);
  }
}

/** A memory region was refused before any ioctl (alignment, overlap, slot in use). A RangeError too. */
export class KvmMemoryRegionError extends VmmRangeError {
  /** Always "KvmMemoryRegionError" (the class name, for people). */
  override name = "KvmMemoryRegionError";
  /** Always "ERR_VMM_KVM_MEMORY_REGION": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_KVM_MEMORY_REGION";
}

/** More vCPUs were asked of a VM than this KVM (KVM_CAP_MAX_VCPUS) or the caller allows. A RangeError too. */
export class KvmVcpuLimitError extends VmmRangeError {
  /** Always "KvmVcpuLimitError" (the class name, for people). */
  override name = "KvmVcpuLimitError";
  /** Always "ERR_VMM_KVM_VCPU_LIMIT": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_KVM_VCPU_LIMIT";
  constructor(
    /** The vCPU count asked for. */
    readonly requested: number,
    /** The most this KVM (or the caller) allows. */
    readonly limit: number,
    why: string,
  ) {
    super(`${requested} vCPUs requested, at most ${limit} possible (${why})`);
  }
}
