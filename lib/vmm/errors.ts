// Errors the machine raises, each carrying what a user needs to act on it, each a VmmError with a
// stable `code` (ERR_VMM_...). The base class lives in types/errors.ts so that boot/ shares it.

import type { AddressSpace } from "../devices/device.js";
import { VmmError } from "../types/errors.js";

export { VmmError };

/** A device or handler asked for a range that another one already holds. */
export class BusConflictError extends VmmError {
  override name = "BusConflictError";
  override readonly code: string = "ERR_VMM_BUS_CONFLICT";
  constructor(
    message: string,
    readonly space: AddressSpace,
    readonly base: number,
    readonly length: number,
    readonly holder: string,
  ) {
    super(message);
  }
}

/** Strict mode: the guest touched a port or MMIO address nothing is registered at. */
export class UnhandledAccessError extends VmmError {
  override name = "UnhandledAccessError";
  override readonly code: string = "ERR_VMM_UNHANDLED_ACCESS";
  constructor(
    message: string,
    readonly space: AddressSpace,
    readonly address: number,
    readonly size: number,
    readonly write: boolean,
  ) {
    super(message);
  }
}

/** The requested backend cannot be used here (with the reason, e.g. no /dev/kvm or module missing). */
export class BackendUnavailableError extends VmmError {
  override name = "BackendUnavailableError";
  override readonly code: string = "ERR_VMM_BACKEND_UNAVAILABLE";
  constructor(
    message: string,
    readonly backend: "kvm" | "soft",
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

/** Bad arguments to createMachine / run / loaders. */
export class MachineConfigError extends VmmError {
  override name = "MachineConfigError";
  override readonly code: string = "ERR_VMM_CONFIG";
}

/**
 * setRegs/setSregs/setMsr of a vCPU with a value no x86 CPU can hold (a reserved bit, a
 * non-canonical address, a value out of range or of the wrong type, an unknown register): refused
 * before anything is written. `register` names the field (`rflags`, `cr4`, `cs.base`, `msr 0x277`).
 */
export class RegisterValueError extends VmmError {
  override name = "RegisterValueError";
  override readonly code: string = "ERR_VMM_REGISTER_VALUE";
  constructor(
    message: string,
    readonly register: string,
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
  override name = "InvalidArgumentError";
  override readonly code: string = "ERR_VMM_INVALID_ARGUMENT";
  constructor(
    message: string,
    readonly argument: string,
  ) {
    super(message);
  }
}

/** The machine was closed: its vCPUs, memory and devices are gone. */
export class MachineClosedError extends VmmError {
  override name = "MachineClosedError";
  override readonly code: string = "ERR_VMM_CLOSED";
  constructor(what?: string) {
    super(what ? `${what}: the machine is closed` : "the machine is closed");
  }
}

/** run()/runSync() while a run of the same machine is in progress. */
export class MachineBusyError extends VmmError {
  override name = "MachineBusyError";
  override readonly code: string = "ERR_VMM_BUSY";
}

export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, "0")}`;
}
