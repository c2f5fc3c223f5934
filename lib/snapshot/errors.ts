// What goes wrong with a snapshot, as a value the user can act on: which section of the file (or of
// the machine) is at fault and why. A restore that throws this has changed nothing on the machine.

import { VmmError } from "../types/errors.js";

export type SnapshotSection =
  | "file"
  | "header"
  | "base"
  | "config"
  | "memory"
  | "memory-map"
  | "vcpus"
  | "devices"
  | "kvm"
  | "machine"
  | "cli";

export class SnapshotError extends VmmError {
  override readonly name = "SnapshotError";
  /** Always "ERR_VMM_SNAPSHOT": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_SNAPSHOT";
  constructor(
    readonly section: SnapshotSection,
    message: string,
  ) {
    super(`snapshot ${section}: ${message}`);
  }
}
