// Puts virtio-mmio devices on a Machine the way Firecracker does: each gets a 4 KiB window from
// 0xd0000000 upward (in the PC's PCI hole, above any low RAM either backend maps) and an ISA
// interrupt line no other attached device uses, and the guest learns of it from a kernel
// command-line fragment `virtio_mmio.device=4K@0xd0000000:5`. Lines are ISA IRQs so that both
// backends route them alike (KVM's irqchip and the soft backend's PcInterrupts each send IRQ n to
// the 8259 pair and I/O APIC pin n).

import type { ByteOutput } from "../devices/output.js";
import {
  type GuestRam,
  VIRTIO_MMIO_WINDOW,
  VirtioBlk,
  VirtioConsole,
  type VirtioMmioDevice,
  VirtioRng,
} from "../devices/virtio/index.js";
import { MachineConfigError } from "./errors.js";
import type { Machine } from "./machine.js";
import type { GuestMemory } from "./memory.js";

export const VIRTIO_MMIO_BASE = 0xd0000000;
/** room for this many windows above VIRTIO_MMIO_BASE */
const MAX_WINDOWS = 256;
/** the highest line both backends route (ISA IRQs 0-15, then I/O APIC pins as GSIs 16-23) */
const MAX_LINE = 23;
/**
 * ISA lines free on a PC we build: not the PIT (0), i8042 (1), cascade (2), COM2/COM1 (3, 4), RTC
 * (8), ACPI SCI (9), PS/2 mouse (12) or FPU (13)
 */
export const VIRTIO_IRQS: readonly number[] = [5, 6, 7, 10, 11, 14, 15];

/** A machine's RAM as virtio devices see it (views of the regions' own bytes). */
export function guestRam(memory: GuestMemory): GuestRam {
  return {
    view(gpa, length) {
      if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0)
        return undefined;
      return memory.find(gpa, length) ? memory.view(gpa, length) : undefined;
    },
    wrote: (gpa, length) => memory.hostWrote(gpa, length),
    ringWritten: (gpa, length) => memory.hostWrote(gpa, length),
  };
}

/** where a device goes: what the device constructors take besides their own options */
export interface VirtioSlot {
  base: number;
  irq: number;
  memory: GuestRam;
  onBroken?: (message: string) => void;
}

export interface AddVirtioOptions {
  /** a window base instead of the next free one from 0xd0000000 */
  base?: number;
  /** an interrupt line instead of the next free one of VIRTIO_IRQS */
  irq?: number;
  /** told (device name, reason) when the guest breaks the device; default: only `device.broken` says so */
  onBroken?: (device: string, message: string) => void;
}

/** the kernel command-line fragment that tells Linux about a device */
export function virtioCmdline(device: VirtioMmioDevice): string {
  const base = device.ranges[0]!.base;
  return `virtio_mmio.device=${VIRTIO_MMIO_WINDOW / 1024}K@0x${base.toString(16)}:${device.irq}`;
}

/**
 * Builds a device in the next free slot (or the one given), attaches it, and returns it with its
 * command-line fragment.
 */
export function addVirtioDevice<D extends VirtioMmioDevice>(
  vm: Machine,
  make: (slot: VirtioSlot) => D,
  opts: AddVirtioOptions = {},
): { device: D; cmdline: string } {
  const [free] = freeSlots(vm, 1, opts);
  const device = make(slotFor(vm, free!, opts.onBroken));
  attachAll(vm, [device]);
  return { device, cmdline: virtioCmdline(device) };
}

export interface VirtioDriveOptions {
  path: string;
  readonly?: boolean;
  /** GET_ID string; default the file name */
  serial?: string;
}

export interface VirtioDeviceOptions {
  /** one virtio-blk per drive, in order (Linux usually names them vda, vdb, ... in this order) */
  drives?: readonly VirtioDriveOptions[];
  /** a virtio-rng */
  rng?: boolean;
  /** a virtio-console (hvc0) */
  console?: { output?: ByteOutput; onInputSpace?: () => void };
  onBroken?: (device: string, message: string) => void;
}

export interface VirtioDevices {
  blk: VirtioBlk[];
  rng?: VirtioRng;
  console?: VirtioConsole;
  /** every device attached, in order */
  devices: VirtioMmioDevice[];
  /** `virtio_mmio.device=...` fragments for the kernel command line, in order */
  cmdline: string[];
}

/**
 * Attaches the virtio devices asked for: drives first, then rng, then console. All or none: when a
 * drive cannot be opened nothing is attached (and files already opened are closed).
 */
export function addVirtioDevices(vm: Machine, opts: VirtioDeviceOptions = {}): VirtioDevices {
  const makers: ((slot: VirtioSlot) => VirtioMmioDevice)[] = [];
  for (const d of opts.drives ?? []) {
    makers.push(
      (slot) =>
        new VirtioBlk({
          ...slot,
          path: d.path,
          readonly: d.readonly ?? false,
          ...(d.serial !== undefined ? { serial: d.serial } : {}),
        }),
    );
  }
  if (opts.rng) makers.push((slot) => new VirtioRng(slot));
  const c = opts.console;
  if (c) {
    makers.push(
      (slot) =>
        new VirtioConsole({
          ...slot,
          ...(c.output ? { output: c.output } : {}),
          ...(c.onInputSpace ? { onInputSpace: c.onInputSpace } : {}),
        }),
    );
  }
  const slots = freeSlots(vm, makers.length, {});
  const devices: VirtioMmioDevice[] = [];
  try {
    makers.forEach((make, i) => {
      devices.push(make(slotFor(vm, slots[i]!, opts.onBroken)));
    });
  } catch (e) {
    for (const d of devices) closeDevice(d);
    throw e;
  }
  attachAll(vm, devices);
  const out: VirtioDevices = { blk: [], devices, cmdline: devices.map(virtioCmdline) };
  for (const d of devices) {
    if (d instanceof VirtioBlk) out.blk.push(d);
    else if (d instanceof VirtioRng) out.rng = d;
    else if (d instanceof VirtioConsole) out.console = d;
  }
  return out;
}

function slotFor(
  vm: Machine,
  free: { base: number; irq: number },
  onBroken: ((device: string, message: string) => void) | undefined,
): VirtioSlot {
  const slot: VirtioSlot = { ...free, memory: guestRam(vm.memory) };
  if (onBroken) {
    const name = () =>
      vm.devices.find((d) => d.ranges[0]?.space === "mmio" && d.ranges[0].base === free.base)?.name ??
      `virtio@${free.base.toString(16)}`;
    slot.onBroken = (message) => onBroken(name(), message);
  }
  return slot;
}

function attachAll(vm: Machine, devices: readonly VirtioMmioDevice[]): void {
  let i = 0;
  try {
    for (; i < devices.length; i++) vm.addDevice(devices[i]!);
  } catch (e) {
    // the machine cannot detach devices: those attached stay (and keep their files); the rest close
    for (const d of devices.slice(i)) closeDevice(d);
    throw e;
  }
}

function closeDevice(d: VirtioMmioDevice): void {
  (d as { close?: () => void }).close?.();
}

/** `count` windows and lines nothing attached uses (nor each other); `opts` fixes the first one's */
function freeSlots(
  vm: Machine,
  count: number,
  opts: { base?: number; irq?: number },
): { base: number; irq: number }[] {
  const claims = vm.mmio.bus.claims.map((c) => [c.base, c.base + c.length] as const);
  const lines = new Set(vm.devices.map((d) => d.irq).filter((n) => n !== undefined));
  const out: { base: number; irq: number }[] = [];
  let window = 0;
  for (let k = 0; k < count; k++) {
    let base = k === 0 ? opts.base : undefined;
    while (base === undefined) {
      if (window >= MAX_WINDOWS) {
        throw new MachineConfigError(
          `no free virtio-mmio window in the ${MAX_WINDOWS} from 0x${VIRTIO_MMIO_BASE.toString(16)}`,
        );
      }
      const b = VIRTIO_MMIO_BASE + window++ * VIRTIO_MMIO_WINDOW;
      const e = b + VIRTIO_MMIO_WINDOW;
      if (!claims.some(([cb, ce]) => cb < e && b < ce)) base = b;
    }
    let irq = k === 0 ? opts.irq : undefined;
    if (irq !== undefined && !(Number.isInteger(irq) && irq >= 0 && irq <= MAX_LINE)) {
      throw new MachineConfigError(`virtio irq ${String(irq)} is not an interrupt line 0-${MAX_LINE}`);
    }
    irq ??= VIRTIO_IRQS.find((n) => !lines.has(n));
    if (irq === undefined) {
      throw new MachineConfigError(
        `no free interrupt line for another virtio device (${VIRTIO_IRQS.join(", ")} are taken); pass irq`,
      );
    }
    claims.push([base, base + VIRTIO_MMIO_WINDOW]);
    lines.add(irq);
    out.push({ base, irq });
  }
  return out;
}
