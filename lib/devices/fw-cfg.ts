// QEMU's fw_cfg as the x86 machines expose it: a 16-bit selector at 0x510, a byte-wide data port at
// 0x511, and (when guest memory is given) the DMA interface at 0x514. Items are byte strings keyed
// by a 14-bit selector; named files live at 0x20 and up and are listed by the directory at 0x19.
// Integers in items are little-endian; the directory and the DMA structures are big-endian.

import { describeValue } from "../types/describe-value.js";
import type { Device, DeviceRange } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { DeviceOptionReader } from "./options.js";

export const FW_CFG_SIGNATURE = 0x00;
export const FW_CFG_ID = 0x01;
export const FW_CFG_UUID = 0x02;
export const FW_CFG_RAM_SIZE = 0x03;
export const FW_CFG_NOGRAPHIC = 0x04;
export const FW_CFG_NB_CPUS = 0x05;
export const FW_CFG_MACHINE_ID = 0x06;
export const FW_CFG_KERNEL_ADDR = 0x07;
export const FW_CFG_KERNEL_SIZE = 0x08;
export const FW_CFG_KERNEL_CMDLINE = 0x09;
export const FW_CFG_INITRD_ADDR = 0x0a;
export const FW_CFG_INITRD_SIZE = 0x0b;
export const FW_CFG_BOOT_DEVICE = 0x0c;
export const FW_CFG_NUMA = 0x0d;
export const FW_CFG_BOOT_MENU = 0x0e;
export const FW_CFG_MAX_CPUS = 0x0f;
export const FW_CFG_KERNEL_ENTRY = 0x10;
export const FW_CFG_KERNEL_DATA = 0x11;
export const FW_CFG_INITRD_DATA = 0x12;
export const FW_CFG_CMDLINE_ADDR = 0x13;
export const FW_CFG_CMDLINE_SIZE = 0x14;
export const FW_CFG_CMDLINE_DATA = 0x15;
export const FW_CFG_SETUP_ADDR = 0x16;
export const FW_CFG_SETUP_SIZE = 0x17;
export const FW_CFG_SETUP_DATA = 0x18;
export const FW_CFG_FILE_DIR = 0x19;
export const FW_CFG_FILE_FIRST = 0x20;
export const FW_CFG_WRITE_CHANNEL = 0x4000;
export const FW_CFG_ARCH_LOCAL = 0x8000;
const KEY_MASK = 0x3fff;
const FILE_NAME_MAX = 56;
const FILE_SLOTS = 0x1000; // QEMU's default fw_cfg file slot count

export const FW_CFG_DMA_CTL_ERROR = 0x01;
export const FW_CFG_DMA_CTL_READ = 0x02;
export const FW_CFG_DMA_CTL_SKIP = 0x04;
export const FW_CFG_DMA_CTL_SELECT = 0x08;
export const FW_CFG_DMA_CTL_WRITE = 0x10;
/** what a read of the DMA address register returns: "QEMU CFG" */
export const FW_CFG_DMA_SIGNATURE = 0x51454d5520434647n;

/** guest memory as the DMA interface needs it (lib/vmm's GuestMemory can be wrapped to this) */
export interface DmaMemory {
  /** Reads `len` bytes at guest-physical address `gpa`. */
  read(gpa: number, len: number): Uint8Array;
  /** Writes `bytes` at guest-physical address `gpa`. */
  write(gpa: number, bytes: Uint8Array): void;
}

/** a Linux-style load: bytes plus the guest address the loader chose for them */
export interface FwCfgBlob {
  /** The bytes. */
  data: Uint8Array;
  /** Guest-physical address the loader chose for them (the *_ADDR item); default 0. */
  addr?: number;
}

/** One e820 memory-map entry (exported from the package as `FwCfgE820Entry`). */
export interface E820Entry {
  /** Start guest-physical address. */
  addr: number;
  /** Length in bytes. */
  size: number;
  /** 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable */
  type: number;
}

export function encodeE820(entries: readonly E820Entry[]): Uint8Array {
  const out = new Uint8Array(20 * entries.length);
  const v = new DataView(out.buffer);
  entries.forEach((e, i) => {
    v.setBigUint64(20 * i, BigInt(e.addr), true);
    v.setBigUint64(20 * i + 8, BigInt(e.size), true);
    v.setUint32(20 * i + 16, e.type, true);
  });
  return out;
}

/** Options of {@link FwCfg}: the items and files it serves. */
export interface FwCfgOptions {
  /** RAM size in bytes (FW_CFG_RAM_SIZE, u64) */
  ramBytes?: number;
  /** FW_CFG_NB_CPUS and (unless maxCpus) FW_CFG_MAX_CPUS; default 1 */
  cpus?: number;
  /** FW_CFG_MAX_CPUS; default `cpus`. */
  maxCpus?: number;
  /** 16 bytes; default all zero */
  uuid?: Uint8Array;
  /** default true */
  nographic?: boolean;
  /** protected-mode kernel part (KERNEL_ADDR/SIZE/DATA), entry point (KERNEL_ENTRY) */
  kernel?: FwCfgBlob & { entry?: number };
  /** real-mode setup part of a bzImage (SETUP_ADDR/SIZE/DATA) */
  setup?: FwCfgBlob;
  /** The initial ramdisk (INITRD_ADDR/SIZE/DATA). */
  initrd?: FwCfgBlob;
  /** kernel command line; stored NUL-terminated (CMDLINE_SIZE counts the NUL) as QEMU does */
  cmdline?: string;
  /** CMDLINE_ADDR: where the firmware should put the command line; default 0. */
  cmdlineAddr?: number;
  /** memory map for firmware, as the "etc/e820" file (packed LE u64 address, u64 length, u32 type) */
  e820?: readonly E820Entry[];
  /** named files, in the directory in the order given */
  files?: Readonly<Record<string, Uint8Array>>;
  /** enables the DMA interface at 0x514 */
  dmaMemory?: DmaMemory;
  /** default 0x510 */
  base?: number;
  /** default 0x514 */
  dmaBase?: number;
}

interface Item {
  data: Uint8Array;
  /** called after a guest write through DMA; when absent the item is read-only */
  onWrite?: (data: Uint8Array) => void;
}

/** One entry of the fw_cfg file directory. */
export interface FwCfgFileEntry {
  /** The file name, e.g. "etc/e820" (at most 55 bytes). */
  name: string;
  /** The selector that reads the file (0x20 and up). */
  select: number;
  /** The file's length in bytes. */
  size: number;
}

/** {@link FwCfg}'s saved state: where the guest is in its reads (items come from the options again). */
export interface FwCfgState {
  /** The selected item key. */
  selector: number;
  /** Read offset inside the selected item. */
  offset: number;
  /** High 32 bits of the DMA address, written before the low half. */
  dmaAddrHigh: number;
}

/** fw_cfg's DeviceConfigError: a wrong option, file name or item key. */
export class FwCfgError extends DeviceConfigError {
  /** Always "FwCfgError" (the class name, for people). */
  override name = "FwCfgError";
}

const fwCfgError = (device: string, option: string, message: string) =>
  new FwCfgError(device, option, message);

function u16(v: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, true);
  return b;
}
function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}
function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

/**
 * QEMU's fw_cfg (x86 layout): a 16-bit selector at 0x510, a data port at 0x511 and, with `dmaMemory`, the DMA
 * interface at 0x514. Serves the standard items (RAM size, CPUs, kernel, initrd, command line) and named
 * files; firmware such as SeaBIOS and Linux's qemu_fw_cfg read it.
 */
export class FwCfg implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "fw_cfg";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  readonly #items = new Map<number, Item>();
  readonly #files: FwCfgFileEntry[] = [];
  readonly #dma: DmaMemory | undefined;
  #selector = 0;
  #offset = 0;
  /** DMA address register: high half latched by a 32-bit write at 0x514 */
  #dmaAddrHigh = 0;
  /** DMA transfers that failed (bad address, write to a read-only item) */
  dmaErrors = 0;

  constructor(opts?: FwCfgOptions) {
    const o: DeviceOptionReader<FwCfgOptions> = new DeviceOptionReader(this.name, opts, "", fwCfgError);
    const base = o.port("base", 0x510, 2);
    const dmaBase = o.port("dmaBase", 0x514, 8);
    const dma = o.raw("dmaMemory");
    if (dma !== undefined) {
      const d = dma as Partial<Record<keyof DmaMemory, unknown>> | null;
      if (
        typeof d !== "object" ||
        d === null ||
        typeof d.read !== "function" ||
        typeof d.write !== "function"
      ) {
        o.fail("dmaMemory", `must be { read(gpa, len), write(gpa, bytes) }, got ${describeValue(dma)}`);
      }
    }
    this.#dma = dma as DmaMemory | undefined;
    const ranges: DeviceRange[] = [{ space: "io", base, length: 2 }];
    if (this.#dma) ranges.push({ space: "io", base: dmaBase, length: 8 });
    this.ranges = ranges;

    const uuid = o.bytes("uuid") ?? new Uint8Array(16);
    if (uuid.length !== 16) o.fail("uuid", `must be 16 bytes, got ${uuid.length}`);
    const ram = o.integer("ramBytes", 0, 0, Number.MAX_SAFE_INTEGER);
    const nographic = o.boolean("nographic", true);
    const cpus = o.integer("cpus", 1, 1, 0xffff);
    const maxCpus = o.integer("maxCpus", cpus, cpus, 0xffff);
    const kernel = this.#blobOption(o, "kernel");
    const entry = kernel?.integer("entry", 0, 0, 0xffffffff);
    const setup = this.#blobOption(o, "setup");
    const initrd = this.#blobOption(o, "initrd");
    const cmdline = o.string("cmdline");
    const cmdlineAddr = o.integer("cmdlineAddr", 0, 0, 0xffffffff);
    const e820 = o.raw("e820");
    if (e820 !== undefined) {
      if (!Array.isArray(e820))
        o.fail("e820", `must be an array of { addr, size, type }, got ${describeValue(e820)}`);
      e820.forEach((e: unknown, i) => {
        const r = e as Partial<Record<keyof E820Entry, unknown>> | null;
        const ok =
          typeof r === "object" &&
          r !== null &&
          [r.addr, r.size].every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0) &&
          Number.isSafeInteger((r.addr as number) + (r.size as number)) &&
          typeof r.type === "number" &&
          Number.isInteger(r.type) &&
          r.type >= 0 &&
          r.type <= 0xffffffff;
        if (!ok) o.fail(`e820[${i}]`, `${describeValue(e)} is not a valid { addr, size, type } range`);
      });
    }
    const files = o.get("files", {});
    if (typeof files !== "object" || files === null || Array.isArray(files)) {
      o.fail("files", `must be an object of name -> Uint8Array, got ${describeValue(files)}`);
    }
    for (const [name, data] of Object.entries(files) as [string, unknown][]) {
      if (!(data instanceof Uint8Array))
        o.fail(`files[${JSON.stringify(name)}]`, `must be a Uint8Array, got ${describeValue(data)}`);
    }

    this.setItem(FW_CFG_SIGNATURE, new TextEncoder().encode("QEMU"));
    this.setItem(FW_CFG_ID, u32(this.#dma ? 3 : 1));
    this.setItem(FW_CFG_UUID, uuid);
    this.setItem(FW_CFG_RAM_SIZE, u64(ram));
    this.setItem(FW_CFG_NOGRAPHIC, u16(nographic ? 1 : 0));
    this.setItem(FW_CFG_NB_CPUS, u16(cpus));
    this.setItem(FW_CFG_MAX_CPUS, u16(maxCpus));
    this.setItem(FW_CFG_MACHINE_ID, u32(0));
    this.setItem(FW_CFG_BOOT_MENU, u16(0));
    this.setItem(FW_CFG_NUMA, u64(0));

    if (kernel) {
      this.#blob(kernel, FW_CFG_KERNEL_ADDR, FW_CFG_KERNEL_SIZE, FW_CFG_KERNEL_DATA);
      if (kernel.raw("entry") !== undefined) this.setItem(FW_CFG_KERNEL_ENTRY, u32(entry ?? 0));
    }
    if (setup) this.#blob(setup, FW_CFG_SETUP_ADDR, FW_CFG_SETUP_SIZE, FW_CFG_SETUP_DATA);
    if (initrd) this.#blob(initrd, FW_CFG_INITRD_ADDR, FW_CFG_INITRD_SIZE, FW_CFG_INITRD_DATA);
    if (cmdline !== undefined) {
      const text = new TextEncoder().encode(cmdline);
      const data = new Uint8Array(text.length + 1);
      data.set(text);
      this.setItem(FW_CFG_CMDLINE_ADDR, u32(cmdlineAddr));
      this.setItem(FW_CFG_CMDLINE_SIZE, u32(data.length));
      this.setItem(FW_CFG_CMDLINE_DATA, data);
      this.setItem(FW_CFG_KERNEL_CMDLINE, u32(cmdlineAddr));
    }
    this.#rebuildDir();
    if (e820 !== undefined) this.addFile("etc/e820", encodeE820(e820 as E820Entry[]));
    for (const [name, data] of Object.entries(files as Record<string, Uint8Array>)) this.addFile(name, data);
  }

  /** a FwCfgBlob option, checked: `data` bytes and a 32-bit `addr` */
  #blobOption(
    o: DeviceOptionReader<FwCfgOptions>,
    key: "kernel" | "setup" | "initrd",
  ): DeviceOptionReader<FwCfgBlob & { entry?: number }> | undefined {
    const blob = o.nested<FwCfgBlob & { entry?: number }>(key);
    if (!blob) return undefined;
    if (!(blob.raw("data") instanceof Uint8Array)) {
      blob.fail("data", `must be a Uint8Array, got ${describeValue(blob.raw("data"))}`);
    }
    blob.integer("addr", 0, 0, 0xffffffff);
    return blob;
  }

  #blob(b: DeviceOptionReader<FwCfgBlob>, addrKey: number, sizeKey: number, dataKey: number): void {
    const data = b.raw("data") as Uint8Array;
    this.setItem(addrKey, u32(b.integer("addr", 0, 0, 0xffffffff)));
    this.setItem(sizeKey, u32(data.length));
    this.setItem(dataKey, data);
  }

  /** Sets (or replaces) a numbered item. Keys 0x20 and up belong to files: use addFile. */
  setItem(key: number, data: Uint8Array): void {
    const k = key & ~FW_CFG_WRITE_CHANNEL;
    if (
      !Number.isInteger(key) ||
      k < 0 ||
      k > 0xffff ||
      ((k & KEY_MASK) >= FW_CFG_FILE_FIRST && !(k & FW_CFG_ARCH_LOCAL))
    ) {
      throw new FwCfgError(this.name, "setItem", `key 0x${key.toString(16)} is not a fixed item key`);
    }
    this.#items.set(k, { data });
  }

  /**
   * Adds a named file (e.g. "etc/boot-fail-wait", "opt/org.example/blob") and returns its
   * selector. With onWrite, the guest may write it through DMA.
   */
  addFile(name: string, data: Uint8Array, onWrite?: (data: Uint8Array) => void): number {
    const nameBytes = new TextEncoder().encode(name);
    if (nameBytes.length === 0 || nameBytes.length >= FILE_NAME_MAX) {
      throw new FwCfgError(this.name, "addFile", `name "${name}" must be 1-55 bytes`);
    }
    if (this.#files.some((f) => f.name === name)) {
      throw new FwCfgError(this.name, "addFile", `file "${name}" already exists`);
    }
    if (this.#files.length >= FILE_SLOTS) throw new FwCfgError(this.name, "addFile", "no free file slots");
    const select = FW_CFG_FILE_FIRST + this.#files.length;
    this.#files.push({ name, select, size: data.length });
    this.#items.set(select, { data, onWrite });
    this.#rebuildDir();
    return select;
  }

  /** The file directory, in selector order. */
  get files(): readonly FwCfgFileEntry[] {
    return this.#files;
  }

  /** the current bytes of an item (after any guest DMA writes) */
  item(key: number): Uint8Array | undefined {
    return this.#items.get(key & ~FW_CFG_WRITE_CHANNEL)?.data;
  }

  /** The item key the guest selected last. */
  get selector(): number {
    return this.#selector;
  }

  #rebuildDir(): void {
    // QEMU keeps the directory sorted by name; selectors stay in insertion order
    const sorted = [...this.#files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const dir = new Uint8Array(4 + 64 * sorted.length);
    const v = new DataView(dir.buffer);
    v.setUint32(0, sorted.length, false);
    sorted.forEach((f, i) => {
      const o = 4 + 64 * i;
      v.setUint32(o, f.size, false);
      v.setUint16(o + 4, f.select, false);
      dir.set(new TextEncoder().encode(f.name), o + 8);
    });
    this.#items.set(FW_CFG_FILE_DIR, { data: dir });
  }

  #select(key: number): void {
    this.#selector = key & 0xffff;
    this.#offset = 0;
  }

  #current(): Item | undefined {
    return this.#items.get(this.#selector & ~FW_CFG_WRITE_CHANNEL);
  }

  /** {@inheritDoc Device.read} */
  read(offset: number, size: number, rangeIndex: number): number {
    if (rangeIndex === 1) return this.#readDmaRegister(offset, size);
    // QEMU's combined port answers every read with data bytes, in stream order (lowest port
    // byte first for wider accesses)
    let v = 0;
    for (let i = 0; i < size; i++) v += this.#nextByte() * 2 ** (8 * i);
    return v;
  }

  #nextByte(): number {
    const item = this.#current();
    if (!item || this.#offset >= item.data.length) return 0;
    return item.data[this.#offset++]!;
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, size: number, value: number, rangeIndex: number): void {
    if (rangeIndex === 1) {
      this.#writeDmaRegister(offset, size, value);
      return;
    }
    // the selector takes a 16-bit write at 0x510; byte writes are data writes, which QEMU has
    // ignored since 2.4 (writes go through DMA only)
    if (offset === 0 && size >= 2) this.#select(value & 0xffff);
  }

  #readDmaRegister(offset: number, size: number): number {
    // the register is big-endian: byte k of the port is byte k of the big-endian signature
    const sig = FW_CFG_DMA_SIGNATURE;
    let v = 0;
    for (let i = 0; i < size && offset + i < 8; i++) {
      const byte = Number((sig >> BigInt(8 * (7 - (offset + i)))) & 0xffn);
      v += byte * 2 ** (8 * i);
    }
    return v;
  }

  #writeDmaRegister(offset: number, size: number, value: number): void {
    // The guest writes the big-endian address: as two 32-bit words (high at +0, low at +4 starts
    // the transfer) or one 64-bit write. A port write of a big-endian value arrives byte-swapped
    // in `value`, so swap it back.
    const swap32 = (x: number) =>
      (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | ((x >>> 24) & 0xff)) >>> 0;
    if (offset === 0 && size === 4) {
      this.#dmaAddrHigh = swap32(value);
    } else if (offset === 4 && size === 4) {
      const addr = this.#dmaAddrHigh * 2 ** 32 + swap32(value);
      this.#dmaAddrHigh = 0;
      this.#runDma(addr);
    } else if (offset === 0 && size === 8) {
      const lo = value % 2 ** 32;
      const hi = Math.floor(value / 2 ** 32);
      this.#runDma(swap32(lo) * 2 ** 32 + swap32(hi));
    }
  }

  /** one FWCfgDmaAccess: be32 control, be32 length, be64 address */
  #runDma(descAddr: number): void {
    const mem = this.#dma;
    if (!mem) return;
    let desc: DataView;
    try {
      desc = new DataView(mem.read(descAddr, 16).slice().buffer);
    } catch {
      this.dmaErrors++;
      return; // no descriptor to report the error in
    }
    let control = desc.getUint32(0, false);
    const length = desc.getUint32(4, false);
    const addr = Number(desc.getBigUint64(8, false));
    if (control & FW_CFG_DMA_CTL_SELECT) this.#select(control >>> 16);
    let error = false;
    try {
      const item = this.#current();
      const avail = item ? Math.max(0, item.data.length - this.#offset) : 0;
      const n = Math.min(length, avail);
      if (control & FW_CFG_DMA_CTL_READ) {
        // past the end of an item (or with no item) the guest reads zeros, as QEMU does
        const chunk = new Uint8Array(length);
        if (n > 0) chunk.set(item!.data.subarray(this.#offset, this.#offset + n));
        mem.write(addr, chunk);
        this.#offset += length;
      } else if (control & FW_CFG_DMA_CTL_WRITE) {
        // only items with a write handler accept writes, and never past their end
        if (!item?.onWrite || n !== length) {
          error = true;
        } else if (n > 0) {
          item.data.set(mem.read(addr, n), this.#offset);
          this.#offset += n;
          item.onWrite(item.data);
        }
      } else if (control & FW_CFG_DMA_CTL_SKIP) {
        this.#offset += length;
      }
    } catch {
      error = true;
    }
    if (error) this.dmaErrors++;
    control = error ? FW_CFG_DMA_CTL_ERROR : 0;
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, control, false);
    try {
      mem.write(descAddr, out);
    } catch {
      this.dmaErrors++;
    }
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#select(0);
    this.#dmaAddrHigh = 0;
  }

  /** the guest-visible cursor; item contents are configuration and are not included */
  snapshot(): FwCfgState {
    return { selector: this.#selector, offset: this.#offset, dmaAddrHigh: this.#dmaAddrHigh };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: FwCfgState): void {
    this.#selector = s.selector & 0xffff;
    this.#offset = Math.max(0, Math.floor(s.offset));
    this.#dmaAddrHigh = s.dmaAddrHigh >>> 0;
  }
}
