// Where a Linux kernel goes in guest-physical memory, for both ways in: a bzImage's protected-mode
// part (loaded at pref_address or 1 MiB, then decompressed by itself into [runtimeStart, +init_size))
// and a vmlinux's segments (at their p_paddr, where the kernel runs as it is). Only plans: nothing
// here writes guest memory, and every problem is thrown before the loader writes a byte.

import { E820_RAM, type E820Entry } from "./e820.js";
import { BootSetupError, GuestImageError, hex } from "./errors.js";
import { IDENTITY_MAP_BYTES, type ReservedRange } from "./layout.js";
import type { LinuxSetupHeader } from "./linux-header.js";
import type { Placement } from "./plan.js";
import type { LoadTarget, RamRange } from "./target.js";
import type { VmlinuxImage } from "./vmlinux.js";

export interface Span {
  start: number;
  end: number;
}

const PAGE = 0x1000;
export const HIGH_MEMORY = 0x100000;

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;
const alignDown = (n: number, a: number) => Math.floor(n / a) * a;
export const overlaps = (a: Span, b: Span) => a.start < b.end && b.start < a.end;
const spanOf = (r: ReservedRange): Span => ({ start: r.gpa, end: r.gpa + r.size });

export interface KernelPlacement {
  placements: Placement[];
  /** everything the kernel occupies now or will use while it starts (the initrd keeps clear) */
  footprint: Span[];
  /** bzImage: the protected-mode kernel's address; vmlinux: its lowest segment */
  loadAddress: number;
  /** where the kernel runs: [runtimeStart, runtimeStart + initSize) */
  runtimeStart: number;
  initSize: number;
}

/** The highest page-aligned spot for `size` bytes in one RAM region below `limit`, clear of `avoid`. */
export function placeHigh(regions: readonly RamRange[], size: number, limit: number, avoid: readonly Span[]) {
  const byTop = [...regions].sort((a, b) => b.guestPhysAddr + b.size - (a.guestPhysAddr + a.size));
  for (const r of byTop) {
    let top = Math.min(r.guestPhysAddr + r.size, limit);
    for (;;) {
      const gpa = alignDown(top - size, PAGE);
      if (gpa < r.guestPhysAddr) break;
      const hit = avoid.find((a) => overlaps(a, { start: gpa, end: gpa + size }));
      if (!hit) return gpa;
      top = hit.start;
    }
  }
  return undefined;
}

const ramTop = (target: LoadTarget) => Math.max(...target.regions.map((x) => x.guestPhysAddr + x.size), 0);

/**
 * Where the kernel runs after it relocates itself (the decompressor's arithmetic): a relocatable
 * kernel aligns its load address up to kernel_alignment and never goes below pref_address
 * (LOAD_PHYSICAL_ADDR); a fixed one runs at pref_address.
 */
function runtimeStartFor(h: LinuxSetupHeader, load: number): number {
  if (h.relocatable) return Math.max(alignUp(load, h.kernelAlignment), h.prefAddress);
  return h.prefAddress || load;
}

/** A bzImage's protected-mode kernel: at pref_address when relocatable, aligned and it fits, else 1 MiB. */
export function planBzImageKernel(
  target: LoadTarget,
  h: LinuxSetupHeader,
  image: Uint8Array,
  reserved: readonly ReservedRange[],
): KernelPlacement {
  const clearOfReserved = (s: Span) => !reserved.some((r) => overlaps(s, spanOf(r)));
  const pm = image.subarray(h.setupSize);
  const footprint = (load: number): [Span, Span] => {
    const run = runtimeStartFor(h, load);
    return [
      { start: load, end: load + pm.length },
      { start: run, end: run + Math.max(h.initSize, pm.length) },
    ];
  };
  const fits = (load: number) =>
    footprint(load).every(
      (s) => s.end <= IDENTITY_MAP_BYTES && target.find(s.start, s.end - s.start) && clearOfReserved(s),
    );
  const usePref =
    h.relocatable &&
    h.prefAddress >= HIGH_MEMORY &&
    h.prefAddress % h.kernelAlignment === 0 &&
    fits(h.prefAddress);
  const load = usePref ? h.prefAddress : HIGH_MEMORY;
  const [loaded, run] = footprint(load);
  if (!target.find(loaded.start, loaded.end - loaded.start)) {
    throw new GuestImageError(
      "syssize",
      0x1f4,
      `the protected-mode kernel (${hex(pm.length)} bytes) does not fit in guest RAM at ${hex(load)} (RAM: ${hex(target.size)} bytes, top ${hex(ramTop(target))})`,
    );
  }
  if (run.end > IDENTITY_MAP_BYTES || !target.find(run.start, run.end - run.start)) {
    const mib = Math.ceil(run.end / (1024 * 1024));
    throw new GuestImageError(
      h.initSize ? "init_size" : "syssize",
      h.initSize ? 0x260 : 0x1f4,
      `the kernel needs [${hex(run.start)}, ${hex(run.end)}) to decompress and run (${h.initSize ? "init_size" : "its size"} ${hex(run.end - run.start)} from ${hex(run.start)}) but guest RAM ends at ${hex(ramTop(target))}: give the machine at least ${mib} MiB`,
    );
  }
  for (const s of [loaded, run]) {
    const r = reserved.find((x) => overlaps(s, spanOf(x)));
    if (r) {
      throw new BootSetupError(
        `the kernel at [${hex(s.start)}, ${hex(s.end)}) overlaps the loader's ${r.what} at [${hex(r.gpa)}, ${hex(r.gpa + r.size)}): move the layout`,
      );
    }
  }
  return {
    placements: [
      {
        gpa: load,
        data: pm,
        memSize: pm.length,
        field: usePref ? "pref_address" : "code32_start",
        offset: usePref ? 0x258 : 0x214,
      },
    ],
    footprint: [loaded, run],
    loadAddress: load,
    runtimeStart: run.start,
    initSize: run.end - run.start,
  };
}

/**
 * A vmlinux's segments where they are linked to run: each in RAM below the 4 GiB identity map,
 * clear of the loader's structures and of the e820 entries that are not RAM (ACPI tables).
 */
export function planVmlinuxKernel(
  target: LoadTarget,
  vm: VmlinuxImage,
  reserved: readonly ReservedRange[],
  e820Extra: readonly E820Entry[],
): KernelPlacement {
  const notRam = e820Extra.filter((e) => e.type !== E820_RAM && e.size > 0);
  for (const s of vm.segments) {
    const span = { start: s.gpa, end: s.gpa + s.memSize };
    if (span.end > IDENTITY_MAP_BYTES) {
      throw new GuestImageError(
        s.field,
        s.offset,
        `segment [${hex(span.start)}, ${hex(span.end)}) reaches above 4 GiB, beyond the boot identity map`,
      );
    }
    if (!target.find(span.start, s.memSize)) {
      const mib = Math.ceil(vm.end / (1024 * 1024));
      throw new GuestImageError(
        s.field,
        s.offset,
        `segment [${hex(span.start)}, ${hex(span.end)}) is not in guest RAM (top ${hex(ramTop(target))}): the kernel needs at least ${mib} MiB`,
      );
    }
    const r = reserved.find((x) => overlaps(span, spanOf(x)));
    if (r) {
      throw new GuestImageError(
        s.field,
        s.offset,
        `segment [${hex(span.start)}, ${hex(span.end)}) overlaps the loader's ${r.what} at [${hex(r.gpa)}, ${hex(r.gpa + r.size)})`,
      );
    }
    const e = notRam.find((x) => overlaps(span, { start: x.addr, end: x.addr + x.size }));
    if (e) {
      throw new GuestImageError(
        s.field,
        s.offset,
        `segment [${hex(span.start)}, ${hex(span.end)}) overlaps the e820 entry of type ${e.type} at [${hex(e.addr)}, ${hex(e.addr + e.size)}) (ACPI tables or a device window)`,
      );
    }
  }
  return {
    placements: vm.segments,
    footprint: vm.segments.map((s) => ({ start: s.gpa, end: s.gpa + s.memSize })),
    loadAddress: vm.start,
    runtimeStart: vm.start,
    initSize: vm.end - vm.start,
  };
}
