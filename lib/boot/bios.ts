// Firmware entry, as QEMU's -bios maps a PC's firmware (x86_bios_rom_init): the image is ROM just below
// 4 GiB, so that the reset vector 0xFFFFFFF0 is its 16th byte from the end; its last 128 KiB (all of a
// smaller image) also appear at the top of the first MiB, where real-mode code reaches it after its
// first far jump (QEMU's isa-bios alias). The CPU starts as after RESET (SDM vol. 3 9.1.1, table 9-1):
// real mode, CS selector F000 with base FFFF0000, IP FFF0.

import { CR0_ET, type EntryState, realModeEntry } from "./entry.js";
import { BootSetupError, GuestImageError, hex } from "./errors.js";
import type { LoadResult } from "./flat.js";
import type { LoadedRange } from "./plan.js";
import type { LoadTarget } from "./target.js";

const KiB = 1024;
/** The firmware sizes `format: "bios"` takes: 64, 128 and 256 KiB. */
export const BIOS_SIZES: readonly number[] = Object.freeze([64 * KiB, 128 * KiB, 256 * KiB]);
/** How much of the firmware appears below 1 MiB (0xE0000-0xFFFFF at most), as QEMU's isa-bios. */
export const ISA_BIOS_MAX = 128 * KiB;
const FOUR_GIB = 2 ** 32;
const ONE_MIB = 0x100000;
/** CR0 after RESET: CD and NW set, ET set (SDM table 9-1). */
const CR0_RESET = (1n << 30n) | (1n << 29n) | CR0_ET;

/** Where the firmware goes: the ROM below 4 GiB, and the copy below 1 MiB. */
export interface BiosPlacement {
  /** Guest-physical start of the ROM: 4 GiB minus the image's size. */
  rom: number;
  /** Guest-physical start of the copy below 1 MiB: 1 MiB minus `isaSize`. */
  isa: number;
  /** Bytes of the image (its last ones) below 1 MiB. */
  isaSize: number;
}

/** Checks the firmware's size and says where it goes; a size other than 64/128/256 KiB is refused. */
export function biosPlacement(image: Uint8Array): BiosPlacement {
  if (!BIOS_SIZES.includes(image.length)) {
    throw new GuestImageError(
      "image",
      0,
      `firmware size ${image.length} bytes (${hex(image.length)}) is not 64, 128 or 256 KiB`,
    );
  }
  const isaSize = Math.min(image.length, ISA_BIOS_MAX);
  return { rom: FOUR_GIB - image.length, isa: ONE_MIB - isaSize, isaSize };
}

/**
 * The processor's state after RESET: real mode, CS = F000 with base FFFF0000 and IP FFF0 (the first
 * fetch is at 0xFFFFFFF0), data segments 0 with 64 KiB limits, GDTR and IDTR base 0 limit FFFF,
 * CR0 = 60000010h. `signature` goes to EDX, where the processor leaves its CPUID family, model and
 * stepping (CPUID.1:EAX); without it EDX is 0.
 */
export function resetEntry(signature?: number): EntryState {
  const state = realModeEntry(0xf000, 0xfff0, 0);
  state.sregs.cs = { ...state.sregs.cs, base: 0xffff0000n };
  state.sregs.gdt = { base: 0n, limit: 0xffff };
  state.sregs.idt = { base: 0n, limit: 0xffff };
  state.sregs.cr0 = CR0_RESET;
  if (signature !== undefined) state.regs.rdx = BigInt(signature >>> 0);
  return state;
}

/**
 * Maps a 64/128/256 KiB firmware image as a PC's: read-only just below 4 GiB (through
 * `target.mapRom`), its last 128 KiB at most copied to the top of the first MiB, and the vCPU state
 * after RESET. Refuses, before anything is written or mapped, an image of another size
 * (GuestImageError), a target that cannot map ROM or has no RAM up to 1 MiB (BootSetupError).
 */
export function loadBios(
  target: LoadTarget,
  image: Uint8Array,
  opts: { signature?: number } = {},
): LoadResult {
  const p = biosPlacement(image);
  if (!target.mapRom) {
    throw new BootSetupError("this machine cannot map read-only memory for firmware");
  }
  if (!target.find(p.isa, p.isaSize)) {
    throw new BootSetupError(
      `firmware needs RAM at [${hex(p.isa)}, ${hex(ONE_MIB)}) for its copy below 1 MiB (guest has ${target.size} bytes)`,
    );
  }
  target.mapRom(p.rom, image);
  target.write(p.isa, image.subarray(image.length - p.isaSize));
  const loaded: LoadedRange[] = [{ gpa: p.isa, size: p.isaSize, fileSize: p.isaSize }];
  return {
    format: "bios",
    entry: resetEntry(opts.signature),
    loaded,
    reserved: [],
    rom: { gpa: p.rom, size: image.length, fileSize: image.length },
  };
}
