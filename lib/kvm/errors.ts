// Errors lib/kvm throws: values a user can act on, not raw errno strings.

export type KvmUnavailableReason = "missing" | "permission" | "api-version" | "no-binding";

/** /dev/kvm cannot be used here; `reason` says why and `hint` what to do about it. */
export class KvmUnavailableError extends Error {
  override name = "KvmUnavailableError";
  constructor(
    readonly reason: KvmUnavailableReason,
    message: string,
    readonly hint?: string,
    readonly apiVersion?: number,
  ) {
    super(hint ? `${message} (${hint})` : message);
  }
}

/** A KVM system call failed. Carries Node's system-error fields. */
export class KvmError extends Error {
  override name = "KvmError";
  constructor(
    message: string,
    readonly code: string,
    readonly errno: number,
    readonly syscall: string,
    readonly request?: string,
  ) {
    super(message);
  }
}

/** An object of the Kvm -> KvmVm -> KvmVcpu chain was used after it (or its owner) was closed. */
export class KvmClosedError extends Error {
  override name = "KvmClosedError";
  constructor(what: string) {
    super(`${what} is closed`);
  }
}

/** A memory region was refused before any ioctl (alignment, overlap, slot in use). */
export class KvmMemoryRegionError extends RangeError {
  override name = "KvmMemoryRegionError";
}

/** More vCPUs were asked of a VM than this KVM (KVM_CAP_MAX_VCPUS) or the caller allows. */
export class KvmVcpuLimitError extends RangeError {
  override name = "KvmVcpuLimitError";
  constructor(
    readonly requested: number,
    readonly limit: number,
    why: string,
  ) {
    super(`${requested} vCPUs requested, at most ${limit} possible (${why})`);
  }
}
