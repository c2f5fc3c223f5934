// PCI configuration mechanism #1 (PCI Local Bus spec 3.0, 3.2.2.3.2) and the host bridge behind it,
// as QEMU's pc machine has them (i440FX, 8086:1237, at 00:00.0):
// - CONFIG_ADDRESS at 0xCF8, a dword register: bit 31 enable, bus 23:16, device 15:11, function
//   10:8, register 7:2. Only dword accesses reach it; byte and word accesses to 0xCF8-0xCFB pass
//   through as ordinary I/O (0xCF9 is the chipset's reset control, lib/devices/reset-ports.ts), so
//   this device decodes 0xCF8 alone and leaves 0xCF9-0xCFB to others.
// - CONFIG_DATA at 0xCFC-0xCFF: any size, at the byte of the addressed dword the port names.
//   With the enable bit clear, or for a function that does not exist, reads are all-ones (a master
//   abort) and writes are dropped.
// Linux reads every bus/slot through this pair before it knows what is there (AMD's GART search in
// arch/x86/kernel/aperture_64.c walks 256 buses x 32 slots, twice, on family 0Fh-15h CPUs): the
// address write has no effect of its own until the data port is touched, which is why a VMM may let
// KVM queue it (coalesced PIO, as QEMU's i440FX and Q35 register 0xCF8) instead of exiting for it.

import type { Device, DeviceRange } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { DeviceOptionReader } from "./options.js";

export const PCI_CONFIG_ADDRESS = 0xcf8;
export const PCI_CONFIG_DATA = 0xcfc;
const ENABLE = 0x80000000;
const CONFIG_SIZE = 256;

/** The host bridge at 00:00.0: Intel 440FX, as QEMU's pc machine (revision 2, class 06:00:00). */
export const I440FX_HOST_BRIDGE = Object.freeze({ vendor: 0x8086, device: 0x1237, revision: 0x02 });

// standard header offsets (PCI 3.0, 6.1)
const VENDOR_ID = 0x00;
const DEVICE_ID = 0x02;
const COMMAND = 0x04;
const REVISION_ID = 0x08;
const CLASS_PROG = 0x09;
const CACHE_LINE_SIZE = 0x0c;
const LATENCY_TIMER = 0x0d;
const INTERRUPT_LINE = 0x3c;
const CLASS_BRIDGE = 0x06;
const SUBCLASS_HOST = 0x00;
/** Command bits software can set on a function without BARs: I/O, memory, bus master, parity, SERR, INTx disable */
const COMMAND_WRITABLE = 0x0547;

/** Options of {@link PciHost}. */
export interface PciHostOptions {
  /** the i440FX host bridge at 00:00.0; default true (false: an empty bus, every read a master abort) */
  hostBridge?: boolean;
}

interface PciFunction {
  config: Uint8Array;
  /** bits software may change, per config byte */
  writable: Uint8Array;
}

/** What snapshot() saves: CONFIG_ADDRESS and each function's configuration space by bus/device/function. */
export interface PciHostState {
  /** CONFIG_ADDRESS (0xCF8) */
  address: number;
  /** each function's 256-byte configuration space, keyed by `bus << 8 | device << 3 | function` */
  functions: { bdf: number; config: number[] }[];
}

function hostBridge(): PciFunction {
  const config = new Uint8Array(CONFIG_SIZE);
  const writable = new Uint8Array(CONFIG_SIZE);
  const dv = new DataView(config.buffer);
  dv.setUint16(VENDOR_ID, I440FX_HOST_BRIDGE.vendor, true);
  dv.setUint16(DEVICE_ID, I440FX_HOST_BRIDGE.device, true);
  config[REVISION_ID] = I440FX_HOST_BRIDGE.revision;
  config[CLASS_PROG] = 0;
  config[CLASS_PROG + 1] = SUBCLASS_HOST;
  config[CLASS_PROG + 2] = CLASS_BRIDGE;
  writable[COMMAND] = COMMAND_WRITABLE & 0xff;
  writable[COMMAND + 1] = COMMAND_WRITABLE >>> 8;
  writable[CACHE_LINE_SIZE] = 0xff;
  writable[LATENCY_TIMER] = 0xff;
  writable[INTERRUPT_LINE] = 0xff;
  return { config, writable };
}

/**
 * PCI configuration mechanism #1 at 0xCF8/0xCFC with an i440FX host bridge at 00:00.0 (QEMU's pc):
 * CONFIG_ADDRESS takes dword accesses only, CONFIG_DATA reads the addressed function's configuration
 * space, all-ones for functions that do not exist.
 */
export class PciHost implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "pci-host";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[] = [
    { space: "io", base: PCI_CONFIG_ADDRESS, length: 1 },
    { space: "io", base: PCI_CONFIG_DATA, length: 4 },
  ];
  readonly #withBridge: boolean;
  #address = 0;
  /** by bus << 8 | device << 3 | function */
  #functions = new Map<number, PciFunction>();

  constructor(opts?: PciHostOptions) {
    const o = new DeviceOptionReader(this.name, opts);
    this.#withBridge = o.boolean("hostBridge", true);
    this.reset();
  }

  /** CONFIG_ADDRESS as the guest last wrote it. */
  get address(): number {
    return this.#address;
  }

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number, rangeIndex: number): number {
    const ones = 2 ** (8 * size) - 1;
    if (rangeIndex === 0) return size === 4 ? this.#address : ones;
    const f = this.#target();
    if (!f) return ones;
    const reg = this.#address & 0xfc;
    let v = 0;
    for (let i = 0; i < size; i++) {
      // bytes past 0xCFF are another port's: a wide access at 0xCFD-0xCFF sees all-ones there
      const b = offset + i < 4 ? f.config[reg + offset + i]! : 0xff;
      v += b * 2 ** (8 * i);
    }
    return v;
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, size: number, value: number, rangeIndex: number): void {
    if (rangeIndex === 0) {
      if (size === 4) this.#address = value >>> 0;
      return;
    }
    const f = this.#target();
    if (!f) return;
    const reg = this.#address & 0xfc;
    for (let i = 0; i < size && offset + i < 4; i++) {
      const r = reg + offset + i;
      const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
      const m = f.writable[r]!;
      f.config[r] = (f.config[r]! & ~m) | (b & m);
    }
  }

  /** the function CONFIG_ADDRESS selects, undefined when disabled or absent */
  #target(): PciFunction | undefined {
    if ((this.#address & ENABLE) === 0) return undefined;
    return this.#functions.get((this.#address >>> 8) & 0xffff);
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#address = 0;
    this.#functions = new Map();
    if (this.#withBridge) this.#functions.set(0, hostBridge());
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): PciHostState {
    return {
      address: this.#address,
      functions: [...this.#functions].map(([bdf, f]) => ({ bdf, config: [...f.config] })),
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: PciHostState): void {
    if (!s || typeof s.address !== "number" || !Array.isArray(s.functions)) {
      throw new DeviceConfigError(this.name, "state", "is not a pci-host snapshot");
    }
    this.reset();
    this.#address = s.address >>> 0;
    for (const { bdf, config } of s.functions) {
      const f = this.#functions.get(bdf);
      if (!f || !Array.isArray(config) || config.length !== CONFIG_SIZE) {
        throw new DeviceConfigError(
          this.name,
          "state",
          `has no configuration space for function ${bdf} here`,
        );
      }
      // only what software could have changed comes back; identification stays this model's
      for (let r = 0; r < CONFIG_SIZE; r++) {
        const m = f.writable[r]!;
        f.config[r] = (f.config[r]! & ~m) | (Number(config[r]) & m);
      }
    }
  }
}
