// Flat binaries: the bytes go to one address and the loader sets up the entry mode the image expects.
// Real mode follows the boot-sector convention (0x7C00, CS:IP 0:7C00, DL = boot drive 0x80).

import {
  type EntryMode,
  type EntryState,
  longModeEntry,
  protectedModeEntry,
  realModeEntry,
} from "./entry.js";
import { BootSetupError, GuestImageError, hex } from "./errors.js";
import {
  type BootLayout,
  checkLayout,
  checkReservedInRam,
  DEFAULT_LAYOUT,
  GDT_LIMIT,
  GDT_SIZE,
  gdtBytes,
  IDENTITY_MAP_BYTES,
  PAGE_TABLES_SIZE,
  pageTableBytes,
  type ReservedRange,
} from "./layout.js";
import type { LinuxBootInfo } from "./linux.js";
import { applyPlacements, checkPlacements, type LoadedRange, type Placement } from "./plan.js";
import type { LoadTarget } from "./target.js";

export const BOOT_SECTOR_ADDRESS = 0x7c00;
/** Where flat protected/long-mode images go when no address is given. */
export const DEFAULT_HIGH_ADDRESS = 0x100000;
/** Highest byte real mode reaches: FFFF:FFFF. */
const REAL_MODE_LIMIT = 0x10fff0;

/** Options of `vm.loadFlat()`: where a raw binary goes and how the vCPU starts it. */
export interface FlatOptions {
  /** load address; default 0x7C00 in real mode, 0x100000 otherwise */
  address?: number;
  /** default "real" */
  mode?: EntryMode;
  /** entry point (guest-physical); default the load address */
  entry?: number;
  /** initial stack pointer; default just below the load address */
  stack?: number;
  /** Where the loader puts its GDT, boot information and page tables; default DEFAULT_LAYOUT. */
  layout?: Partial<BootLayout>;
}

/** The format a loader found the image to be (`LoadResult.format`). */
export type ImageFormat = "flat" | "elf32" | "elf64" | "multiboot" | "linux" | "bios";

/** What a loader did: the format, the entry state it set vCPU 0 to, and the guest memory it wrote. */
export interface LoadResult {
  /** The format the image was loaded as. */
  format: ImageFormat;
  /** The state vCPU 0 was put in (already applied by the Machine's loaders). */
  entry: EntryState;
  /** what was copied from the image (gpa, bytes in memory, bytes from the file) */
  loaded: LoadedRange[];
  /** the loader's own structures written to guest memory */
  reserved: ReservedRange[];
  /** multiboot: address of the multiboot information structure (also in EBX); linux: the zero page (RSI) */
  bootInfo?: number;
  /** linux: where the kernel, zero page, command line and initrd went, and the e820 map */
  linux?: LinuxBootInfo;
  /** bios: the firmware ROM below 4 GiB (read-only; not RAM, so not in `loaded`) */
  rom?: LoadedRange;
}

function checkAddress(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new BootSetupError(`${name} ${String(value)} is not a non-negative integer address`);
  }
}

/** GDT (protected and long) and page tables (long): written after the image checks pass. */
export function modeStructures(
  mode: EntryMode,
  layout: BootLayout,
): { reserved: ReservedRange[]; data: Uint8Array[] } {
  if (mode === "real") return { reserved: [], data: [] };
  const reserved: ReservedRange[] = [{ gpa: layout.gdt, size: GDT_SIZE, what: "GDT" }];
  const data = [gdtBytes()];
  if (mode === "long") {
    reserved.push({ gpa: layout.pageTables, size: PAGE_TABLES_SIZE, what: "page tables" });
    data.push(pageTableBytes(layout.pageTables));
  }
  return { reserved, data };
}

export function entryFor(mode: EntryMode, layout: BootLayout, entry: number): EntryState {
  if (mode === "protected") return protectedModeEntry(layout.gdt, GDT_LIMIT, entry);
  if (mode === "long") return longModeEntry(layout.gdt, GDT_LIMIT, layout.pageTables, entry);
  // real mode: keep IP small so short jumps near the entry stay inside the segment
  const cs = entry <= 0xffff ? 0 : entry >>> 4;
  return realModeEntry(cs, entry - cs * 16, 0);
}

export function resolveLayout(layout: Partial<BootLayout> | undefined): BootLayout {
  const l = { ...DEFAULT_LAYOUT, ...layout };
  checkLayout(l);
  return l;
}

export function loadFlat(target: LoadTarget, image: Uint8Array, opts: FlatOptions = {}): LoadResult {
  const mode = opts.mode ?? "real";
  if (mode !== "real" && mode !== "protected" && mode !== "long") {
    throw new BootSetupError(`mode ${String(mode)} is not one of real, protected, long`);
  }
  const address = opts.address ?? (mode === "real" ? BOOT_SECTOR_ADDRESS : DEFAULT_HIGH_ADDRESS);
  const entry = opts.entry ?? address;
  checkAddress("address", address);
  checkAddress("entry", entry);
  const layout = resolveLayout(opts.layout);

  if (image.length === 0) throw new GuestImageError("image", 0, "the image is empty");
  const end = address + image.length;
  if (mode === "real" && end > REAL_MODE_LIMIT) {
    throw new GuestImageError(
      "image",
      0,
      `[${hex(address)}, ${hex(end)}) is beyond ${hex(REAL_MODE_LIMIT)}, the top of real-mode memory`,
    );
  }
  if (mode === "real" && entry >= REAL_MODE_LIMIT) {
    throw new BootSetupError(`entry ${hex(entry)} is not reachable in real mode`);
  }
  if (opts.stack !== undefined) {
    checkAddress("stack", opts.stack);
    if (mode === "real" && opts.stack > 0xffff) {
      throw new BootSetupError(`stack ${hex(opts.stack)} is not an offset in the real-mode stack segment 0`);
    }
  }
  if (entry >= IDENTITY_MAP_BYTES) {
    throw new BootSetupError(`entry ${hex(entry)} is above 4 GiB, outside the identity map`);
  }

  const placements: Placement[] = [
    { gpa: address, data: image, memSize: image.length, field: "image", offset: 0 },
  ];
  const structures = modeStructures(mode, layout);
  checkReservedInRam(target, structures.reserved);
  checkPlacements(target, placements, structures.reserved);

  const loaded = applyPlacements(target, placements);
  structures.reserved.forEach((r, i) => {
    target.write(r.gpa, structures.data[i]!);
  });
  const state = entryFor(mode, layout, entry);
  if (mode === "real") {
    // BIOS convention: DL = boot drive; stack just below the boot sector
    state.regs.rdx = 0x80n;
    state.regs.rsp = BigInt(opts.stack ?? (address <= 0xffff ? address : 0));
  } else {
    state.regs.rsp = BigInt(opts.stack ?? address - (address % 16));
  }
  return { format: "flat", entry: state, loaded, reserved: structures.reserved };
}
