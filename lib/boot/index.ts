// Guest loaders: flat binaries (real, protected or long mode), ELF32/ELF64, multiboot v1, Linux bzImage,
// firmware at the reset vector.
export {
  BIOS_SIZES,
  type BiosPlacement,
  biosPlacement,
  ISA_BIOS_MAX,
  loadBios,
  resetEntry,
} from "./bios.js";
export { detectFormat, type LoadFormat, type LoadImageOptions, loadImage } from "./detect.js";
export * from "./e820.js";
export {
  ELF_MAGIC,
  type ElfImage,
  type ElfOptions,
  type ElfSegment,
  hasElfMagic,
  loadElf,
  parseElf,
} from "./elf.js";
export * from "./entry.js";
export { BootSetupError, GuestImageError } from "./errors.js";
export {
  BOOT_SECTOR_ADDRESS,
  DEFAULT_HIGH_ADDRESS,
  type FlatOptions,
  type ImageFormat,
  type LoadResult,
  loadFlat,
} from "./flat.js";
export {
  type BootLayout,
  DEFAULT_LAYOUT,
  GDT_LIMIT,
  GDT_SIZE,
  IDENTITY_MAP_BYTES,
  PAGE_TABLES_SIZE,
  type ReservedRange,
} from "./layout.js";
export * from "./linux.js";
export * from "./multiboot.js";
export type { LoadedRange } from "./plan.js";
export type { LoadTarget, RamRange } from "./target.js";
