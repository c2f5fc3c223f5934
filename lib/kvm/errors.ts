// Errors lib/kvm throws: values a user can act on, not raw errno strings. Each is a VmmError
// (lib/types/errors.ts, below every layer) with a stable `code`; KvmError's `code` is the errno name,
// as Node's own system errors carry it.

import { VmmError, VmmRangeError } from "../types/errors.js";

/** Why /dev/kvm cannot be used: missing device, no permission, wrong API version, no binding. */
export type KvmUnavailableReason = "missing" | "permission" | "api-version" | "no-binding";

/** /dev/kvm cannot be used here; `reason` says why and `hint` what to do about it. */
export class KvmUnavailableError extends VmmError {
  override name = "KvmUnavailableError";
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
  override name = "KvmError";
  constructor(
    message: string,
    override readonly code: string,
    readonly errno: number,
    readonly syscall: string,
    readonly request?: string,
  ) {
    super(message);
  }
}

/** An object of the Kvm -> KvmVm -> KvmVcpu chain was used after it (or its owner) was closed. */
export class KvmClosedError extends VmmError {
  override name = "KvmClosedError";
  override readonly code: string = "ERR_VMM_KVM_CLOSED";
  constructor(what: string) {
    super(`${what} is closed`);
  }
}

/** A memory region was refused before any ioctl (alignment, overlap, slot in use). A RangeError too. */
export class KvmMemoryRegionError extends VmmRangeError {
  override name = "KvmMemoryRegionError";
  override readonly code: string = "ERR_VMM_KVM_MEMORY_REGION";
}

/** More vCPUs were asked of a VM than this KVM (KVM_CAP_MAX_VCPUS) or the caller allows. A RangeError too. */
export class KvmVcpuLimitError extends VmmRangeError {
  override name = "KvmVcpuLimitError";
  override readonly code: string = "ERR_VMM_KVM_VCPU_LIMIT";
  constructor(
    readonly requested: number,
    readonly limit: number,
    why: string,
  ) {
    super(`${requested} vCPUs requested, at most ${limit} possible (${why})`);
  }
}
