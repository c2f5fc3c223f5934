// Errors the machine raises, each carrying what a user needs to act on it.

import type { AddressSpace } from "../devices/device.js";

export class VmmError extends Error {
  override name = "VmmError";
}

/** A device or handler asked for a range that another one already holds. */
export class BusConflictError extends VmmError {
  override name = "BusConflictError";
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
}

/**
 * setRegs/setSregs/setMsr of a vCPU with a value no x86 CPU can hold (a reserved bit, a
 * non-canonical address, a value out of range or of the wrong type, an unknown register): refused
 * before anything is written. `register` names the field (`rflags`, `cr4`, `cs.base`, `msr 0x277`).
 */
export class RegisterValueError extends VmmError {
  override name = "RegisterValueError";
  constructor(
    message: string,
    readonly register: string,
    readonly value: unknown,
  ) {
    super(message);
  }
}

export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, "0")}`;
}
