// One entry point for "load this file": a Linux bzImage first (55 AA at 0x1FE and "HdrS" at 0x202,
// the test QEMU's -kernel makes before anything else), then multiboot (as QEMU checks it before ELF,
// so a multiboot ELF kernel gets its info structure), then ELF - a Linux vmlinux (the rule in
// vmlinux.ts: x86_64 ET_EXEC with a "Linux" ELF note and a physical entry) boots as Linux, any other
// ELF through the generic loader -, else a flat binary.

import { loadBios } from "./bios.js";
import type { E820Entry } from "./e820.js";
import { hasElfMagic, loadElf } from "./elf.js";
import { BootSetupError } from "./errors.js";
import { type FlatOptions, type LoadResult, loadFlat } from "./flat.js";
import { hasBzImageHeader, type LinuxOptions, loadLinux } from "./linux.js";
import { hasMultibootHeader, loadMultiboot, type MultibootOptions } from "./multiboot.js";
import type { LoadTarget } from "./target.js";
import { isLinuxVmlinux } from "./vmlinux.js";

/**
 * The image format `vm.load()` is told to use; "auto" detects a bzImage (or a Linux vmlinux), a multiboot
 * header, then ELF, else flat. "bios" (firmware at the reset vector) is never detected: only asked for.
 */
export type LoadFormat = "auto" | "flat" | "elf" | "multiboot" | "linux" | "bios";

/** The formats "auto" chooses among: a firmware image has no mark to tell it by, so never "bios". */
export function detectFormat(image: Uint8Array): Exclude<LoadFormat, "auto" | "bios"> {
  if (hasBzImageHeader(image)) return "linux";
  if (hasMultibootHeader(image)) return "multiboot";
  if (hasElfMagic(image)) return isLinuxVmlinux(image) ? "linux" : "elf";
  return "flat";
}

/** Options of `vm.load()`: those of every loader; each format uses the ones that apply to it. */
export interface LoadImageOptions extends FlatOptions, MultibootOptions {
  /** Which loader to use; default "auto". */
  format?: LoadFormat;
  /** Linux: the initial ramdisk (multiboot kernels take `modules` instead) */
  initrd?: Uint8Array;
  /** Linux: the ACPI RSDP's address and extra e820 entries (see LinuxOptions) */
  acpiRsdp?: number;
  /** Linux: extra e820 entries, as LinuxOptions.e820. */
  e820?: readonly E820Entry[];
  /** Linux: where a bzImage's payload is decompressed (LinuxOptions.decompress) */
  decompress?: LinuxOptions["decompress"];
}

/**
 * Loads an image of any supported format. Flat-only options (address, mode, entry, stack) apply to
 * flat images; `cmdline` goes to multiboot and Linux kernels, `modules` and `imageName` to multiboot,
 * `initrd` to Linux. "bios" needs a target that maps ROM (`LoadTarget.mapRom`: the Machine's).
 */
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
    case "linux":
      if (opts.modules?.length) {
        throw new BootSetupError("modules are for multiboot kernels; a Linux kernel takes one initrd");
      }
      return loadLinux(target, {
        kernel: image,
        ...(opts.initrd ? { initrd: opts.initrd } : {}),
        ...(opts.cmdline !== undefined ? { cmdline: opts.cmdline } : {}),
        ...(opts.layout ? { layout: opts.layout } : {}),
        ...(opts.acpiRsdp !== undefined ? { acpiRsdp: opts.acpiRsdp } : {}),
        ...(opts.e820 ? { e820: opts.e820 } : {}),
        ...(opts.decompress ? { decompress: opts.decompress } : {}),
      });
    case "bios":
      return loadBios(target, image);
    default:
      throw new BootSetupError(
        `format ${String(format)} is not one of auto, flat, elf, multiboot, linux, bios`,
      );
  }
}
