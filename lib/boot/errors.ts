// Errors a user can act on: which field of the image is wrong and where it sits in the file. Every
// loader validates the whole image before it writes a byte, so a thrown error leaves guest memory as
// it was.

import { VmmError } from "../types/errors.js";

/** What is wrong with a guest image (kernel, ELF, multiboot, flat binary) and where in the file. */
export class GuestImageError extends VmmError {
  /** Always "GuestImageError" (the class name, for people). */
  override name = "GuestImageError";
  /** Always "ERR_VMM_GUEST_IMAGE": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_GUEST_IMAGE";
  constructor(
    /** the header field (or structure) that is wrong, e.g. "e_phoff", "ph[2].p_filesz", "checksum" */
    readonly field: string,
    /** file offset of that field (or of the data it describes) */
    readonly offset: number,
    /** what is wrong with it */
    readonly problem: string,
  ) {
    super(`${field} at file offset 0x${offset.toString(16)}: ${problem}`);
  }
}

/** The loader's own structures (page tables, GDT, boot info) cannot be placed: a configuration
 * problem (too little RAM, a command line that does not fit), not a problem of the image. */
export class BootSetupError extends VmmError {
  /** Always "BootSetupError" (the class name, for people). */
  override name = "BootSetupError";
  /** Always "ERR_VMM_BOOT_SETUP": stable across releases, compare this, not the message. */
  override readonly code: string = "ERR_VMM_BOOT_SETUP";
}

export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}
