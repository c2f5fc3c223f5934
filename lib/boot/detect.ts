// One entry point for "load this file": multiboot first (as QEMU's -kernel checks it before ELF, so
// a multiboot ELF kernel gets its info structure), then ELF, else a flat binary.

import { hasElfMagic, loadElf } from "./elf.js";
import { BootSetupError } from "./errors.js";
import { type FlatOptions, type LoadResult, loadFlat } from "./flat.js";
import { hasMultibootHeader, loadMultiboot, type MultibootOptions } from "./multiboot.js";
import type { LoadTarget } from "./target.js";

export type LoadFormat = "auto" | "flat" | "elf" | "multiboot";

export function detectFormat(image: Uint8Array): Exclude<LoadFormat, "auto"> {
  if (hasMultibootHeader(image)) return "multiboot";
  if (hasElfMagic(image)) return "elf";
  return "flat";
}

export interface LoadImageOptions extends FlatOptions, MultibootOptions {
  format?: LoadFormat;
}

/** Loads an image of any supported format; flat-only options (address, mode, entry, stack) apply to flat images. */
export function loadImage(target: LoadTarget, image: Uint8Array, opts: LoadImageOptions = {}): LoadResult {
  const format = opts.format ?? "auto";
  const chosen = format === "auto" ? detectFormat(image) : format;
  switch (chosen) {
    case "flat":
      return loadFlat(target, image, opts);
    case "elf":
      return loadElf(target, image, opts);
    case "multiboot":
      return loadMultiboot(target, image, opts);
    default:
      throw new BootSetupError(`format ${String(format)} is not one of auto, flat, elf, multiboot`);
  }
}
