// Errors the machine raises, each carrying what a user needs to act on it, each a VmmError with a
// stable `code` (ERR_VMM_...). The base class lives in types/errors.ts so that boot/ shares it.

import type { AddressSpace } from "../devices/device.js";
import { VmmError } from "../types/errors.js";

export { VmmError };

/** A device or handler asked for a range that another one already holds. */
export class BusConflictError extends VmmError {
  /** Always "BusConflictError" (the class name, for people). */
  override name = "BusConflictError";
  /** Always "ERR_VMM_BUS_CONFLICT": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_BUS_CONFLICT";
  constructor(
    message: string,
    /** "io" for ports, "mmio" for guest-physical addresses. */
    readonly space: AddressSpace,
    /** First port or address of the range that was asked for. */
    readonly base: number,
    /** Length of that range (ports or bytes). */
    readonly length: number,
    /**
     * Who holds the overlapping range (a device name or e.g. "io.onIn(0x60)"); empty when the range itself
     * was invalid.
     */
    readonly holder: string,
  ) {
    super(message);
  }
}

/** Strict mode: the guest touched a port or MMIO address nothing is registered at. */
export class UnhandledAccessError extends VmmError {
  /** Always "UnhandledAccessError" (the class name, for people). */
  override name = "UnhandledAccessError";
  /** Always "ERR_VMM_UNHANDLED_ACCESS": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_UNHANDLED_ACCESS";
  constructor(
    message: string,
    /** "io" for ports, "mmio" for guest-physical addresses. */
    readonly space: AddressSpace,
    /** The port or guest-physical address accessed. */
    readonly address: number,
    /** Access size in bytes. */
    readonly size: number,
    /** true for a write, false for a read. */
    readonly write: boolean,
  ) {
    super(message);
  }
}

/** The requested backend cannot be used here (with the reason, e.g. no /dev/kvm or module missing). */
export class BackendUnavailableError extends VmmError {
  /** Always "BackendUnavailableError" (the class name, for people). */
  override name = "BackendUnavailableError";
  /** Always "ERR_VMM_BACKEND_UNAVAILABLE": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_BACKEND_UNAVAILABLE";
  constructor(
    message: string,
    /** The backend that could not be used. */
    readonly backend: "kvm" | "soft",
    /** The underlying error (e.g. KvmUnavailableError with its reason), when there is one. */
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

/** Bad arguments to createMachine / run / loaders. */
export class MachineConfigError extends VmmError {
  /** Always "MachineConfigError" (the class name, for people). */
  override name = "MachineConfigError";
  /** Always "ERR_VMM_CONFIG": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_CONFIG";
}

/**
 * setRegs/setSregs/setMsr of a vCPU with a value no x86 CPU can hold (a reserved bit, a
 * non-canonical address, a value out of range or of the wrong type, an unknown register): refused
 * before anything is written. `register` names the field (`rflags`, `cr4`, `cs.base`, `msr 0x277`).
 */
export class RegisterValueError extends VmmError {
  /** Always "RegisterValueError" (the class name, for people). */
  override name = "RegisterValueError";
  /** Always "ERR_VMM_REGISTER_VALUE": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_REGISTER_VALUE";
  constructor(
    message: string,
    /** The register or field refused: "rflags", "cr4", "cs.base", "msr 0x277", ... */
    readonly register: string,
    /** The value that was refused, as given. */
    readonly value: unknown,
  ) {
    super(message);
  }
}

/**
 * A public API call got an argument it cannot use (null, undefined where a value is needed, a wrong
 * type, a value out of range). `argument` names it as the signature does (`opts.memoryMiB`,
 * `handler`, `device.ranges[0].base`); checked when the call is made, never later.
 */
export class InvalidArgumentError extends MachineConfigError {
  /** Always "InvalidArgumentError" (the class name, for people). */
  override name = "InvalidArgumentError";
  /** Always "ERR_VMM_INVALID_ARGUMENT": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_INVALID_ARGUMENT";
  constructor(
    message: string,
    /** The argument as the signature names it: "opts.memoryMiB", "handler", "device.ranges[0].base", ... */
    readonly argument: string,
  ) {
    super(message);
  }
}

/** The machine was closed: its vCPUs, memory and devices are gone. */
export class MachineClosedError extends VmmError {
  /** Always "MachineClosedError" (the class name, for people). */
  override name = "MachineClosedError";
  /** Always "ERR_VMM_CLOSED": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_CLOSED";
  constructor(what?: string) {
    super(what ? `${what}: the machine is closed` : "the machine is closed");
  }
}

/** run()/runSync() while a run of the same machine is in progress. */
export class MachineBusyError extends VmmError {
  /** Always "MachineBusyError" (the class name, for people). */
  override name = "MachineBusyError";
  /** Always "ERR_VMM_BUSY": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_BUSY";
}

export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, "0")}`;
}
