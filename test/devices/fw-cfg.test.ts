import { describe, expect, it } from "vitest";
import {
  FW_CFG_CMDLINE_DATA,
  FW_CFG_CMDLINE_SIZE,
  FW_CFG_DMA_CTL_ERROR,
  FW_CFG_DMA_CTL_READ,
  FW_CFG_DMA_CTL_SELECT,
  FW_CFG_DMA_CTL_SKIP,
  FW_CFG_DMA_CTL_WRITE,
  FW_CFG_FILE_DIR,
  FW_CFG_ID,
  FW_CFG_INITRD_ADDR,
  FW_CFG_INITRD_DATA,
  FW_CFG_INITRD_SIZE,
  FW_CFG_KERNEL_SIZE,
  FW_CFG_NB_CPUS,
  FW_CFG_RAM_SIZE,
  FW_CFG_SIGNATURE,
  FwCfg,
  FwCfgError,
} from "../../lib/devices/index.js";
import { attach, type Harness } from "./helpers.js";

function readItem(h: Harness, key: number, len: number): Uint8Array {
  h.outw(0x510, key);
  return Uint8Array.from({ length: len }, () => h.inb(0x511));
}
const le = (b: Uint8Array) => b.reduce((acc, x, i) => acc + x * 2 ** (8 * i), 0);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

class FakeRam {
  bytes = new Uint8Array(0x10000);
  read(gpa: number, len: number): Uint8Array {
    if (gpa + len > this.bytes.length) throw new RangeError("not RAM");
    return this.bytes.slice(gpa, gpa + len);
  }
  write(gpa: number, data: Uint8Array): void {
    if (gpa + data.length > this.bytes.length) throw new RangeError("not RAM");
    this.bytes.set(data, gpa);
  }
}

const swap32 = (x: number) =>
  (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | ((x >>> 24) & 0xff)) >>> 0;

/** what Linux and SeaBIOS do: write a descriptor, then its big-endian address */
function dma(h: Harness, ram: FakeRam, desc: number, control: number, length: number, addr: number): number {
  const v = new DataView(ram.bytes.buffer);
  v.setUint32(desc, control, false);
  v.setUint32(desc + 4, length, false);
  v.setBigUint64(desc + 8, BigInt(addr), false);
  h.outl(0x514, swap32(0));
  h.outl(0x518, swap32(desc));
  return v.getUint32(desc, false);
}

describe("fw_cfg (port I/O)", () => {
  it("presents the signature, ID, RAM size and CPU count", () => {
    const fw = new FwCfg({ ramBytes: 5 * 2 ** 30, cpus: 2 });
    const h = attach(fw);
    expect(text(readItem(h, FW_CFG_SIGNATURE, 4))).toBe("QEMU");
    expect(le(readItem(h, FW_CFG_ID, 4))).toBe(1);
    expect(le(readItem(h, FW_CFG_RAM_SIZE, 8))).toBe(5 * 2 ** 30);
    expect(le(readItem(h, FW_CFG_NB_CPUS, 2))).toBe(2);
    expect(fw.ranges).toHaveLength(1);
  });

  it("restarts an item on each select and reads zeros past its end or for unknown keys", () => {
    const h = attach(new FwCfg());
    expect(text(readItem(h, FW_CFG_SIGNATURE, 6))).toBe("QEMU\0\0");
    expect(text(readItem(h, FW_CFG_SIGNATURE, 2))).toBe("QE");
    expect(le(readItem(h, 0x1234, 4))).toBe(0);
    h.outw(0x510, FW_CFG_SIGNATURE);
    expect(h.inb(0x510)).toBe(0x51); // QEMU's combined port: every byte read is data
    h.outb(0x510, FW_CFG_ID); // a byte write is a (discarded) data write, not a select
    expect(h.inb(0x511)).toBe(0x45);
    expect(h.inw(0x511)).toBe(0x554d); // "MU", first byte lowest
  });

  it("exposes kernel, initrd and a NUL-terminated command line", () => {
    const fw = new FwCfg({
      kernel: { data: new Uint8Array(300) },
      initrd: { data: Uint8Array.of(1, 2, 3), addr: 0x7f00000 },
      cmdline: "console=ttyS0",
    });
    const h = attach(fw);
    expect(le(readItem(h, FW_CFG_KERNEL_SIZE, 4))).toBe(300);
    expect(le(readItem(h, FW_CFG_INITRD_ADDR, 4))).toBe(0x7f00000);
    expect(le(readItem(h, FW_CFG_INITRD_SIZE, 4))).toBe(3);
    expect([...readItem(h, FW_CFG_INITRD_DATA, 3)]).toEqual([1, 2, 3]);
    expect(le(readItem(h, FW_CFG_CMDLINE_SIZE, 4))).toBe(14);
    expect(text(readItem(h, FW_CFG_CMDLINE_DATA, 14))).toBe("console=ttyS0\0");
  });

  it("lists named files in a big-endian directory sorted by name", () => {
    const fw = new FwCfg({ files: { "opt/z": Uint8Array.of(9), "etc/a": Uint8Array.of(1, 2) } });
    const h = attach(fw);
    const dir = readItem(h, FW_CFG_FILE_DIR, 4 + 2 * 64);
    const v = new DataView(dir.buffer);
    expect(v.getUint32(0, false)).toBe(2);
    const entry = (i: number) => ({
      size: v.getUint32(4 + 64 * i, false),
      select: v.getUint16(8 + 64 * i, false),
      name: text(dir.subarray(12 + 64 * i, 12 + 64 * i + 56)).replace(/\0+$/, ""),
    });
    expect(entry(0)).toEqual({ size: 2, select: 0x21, name: "etc/a" });
    expect(entry(1)).toEqual({ size: 1, select: 0x20, name: "opt/z" });
    expect([...readItem(h, 0x21, 2)]).toEqual([1, 2]);
  });

  it("publishes the memory map as etc/e820", () => {
    const fw = new FwCfg({
      e820: [
        { addr: 0, size: 0x9fc00, type: 1 },
        { addr: 0x100000, size: 5 * 2 ** 30, type: 1 },
      ],
    });
    const file = fw.files.find((f) => f.name === "etc/e820")!;
    expect(file.size).toBe(40);
    const h = attach(fw);
    const v = new DataView(readItem(h, file.select, 40).buffer);
    expect(v.getBigUint64(20, true)).toBe(0x100000n);
    expect(v.getBigUint64(28, true)).toBe(5n * 2n ** 30n);
    expect(v.getUint32(36, true)).toBe(1);
    expect(() => new FwCfg({ e820: [{ addr: -1, size: 1, type: 1 }] })).toThrow(/e820/);
  });

  it("rejects bad configuration with FwCfgError", () => {
    const fw = new FwCfg();
    expect(() => fw.addFile("x".repeat(56), new Uint8Array())).toThrow(FwCfgError);
    fw.addFile("etc/x", new Uint8Array());
    expect(() => fw.addFile("etc/x", new Uint8Array())).toThrow(/already/);
    expect(() => fw.setItem(0x20, new Uint8Array())).toThrow(/fixed item/);
    expect(() => new FwCfg({ uuid: new Uint8Array(3) })).toThrow(/16 bytes/);
    expect(() => new FwCfg({ initrd: { data: new Uint8Array(1), addr: -4 } })).toThrow(/initrd.addr/);
  });
});

describe("fw_cfg DMA", () => {
  it("identifies itself with ID bit 1 and the 'QEMU CFG' signature", () => {
    const fw = new FwCfg({ dmaMemory: new FakeRam() });
    const h = attach(fw);
    expect(le(readItem(h, FW_CFG_ID, 4))).toBe(3);
    const sig = [h.inl(0x514), h.inl(0x518)].flatMap((w) => [
      w & 0xff,
      (w >> 8) & 0xff,
      (w >> 16) & 0xff,
      w >>> 24,
    ]);
    expect(String.fromCharCode(...sig)).toBe("QEMU CFG");
  });

  it("selects and reads an item into guest memory, zero-filling past its end", () => {
    const ram = new FakeRam();
    ram.bytes.fill(0xee, 0x2000, 0x2010);
    const fw = new FwCfg({ dmaMemory: ram });
    const h = attach(fw);
    const ctl = (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    expect(dma(h, ram, 0x1000, ctl, 6, 0x2000)).toBe(0);
    expect(text(ram.bytes.subarray(0x2000, 0x2006))).toBe("QEMU\0\0");
    expect(ram.bytes[0x2006]).toBe(0xee);
  });

  it("skips, then continues reading where the skip left off", () => {
    const ram = new FakeRam();
    const fw = new FwCfg({ dmaMemory: ram, files: { "etc/data": Uint8Array.of(10, 11, 12, 13) } });
    const h = attach(fw);
    dma(h, ram, 0x1000, (0x20 << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_SKIP, 2, 0);
    dma(h, ram, 0x1000, FW_CFG_DMA_CTL_READ, 2, 0x3000);
    expect([...ram.bytes.subarray(0x3000, 0x3002)]).toEqual([12, 13]);
  });

  it("writes a writable file and reports an error for read-only items", () => {
    const ram = new FakeRam();
    const fw = new FwCfg({ dmaMemory: ram });
    const writes: number[][] = [];
    const sel = fw.addFile("etc/w", new Uint8Array(4), (d) => writes.push([...d]));
    const h = attach(fw);
    ram.bytes.set([5, 6, 7, 8], 0x4000);
    expect(dma(h, ram, 0x1000, (sel << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE, 4, 0x4000)).toBe(
      0,
    );
    expect(writes).toEqual([[5, 6, 7, 8]]);
    expect([...fw.item(sel)!]).toEqual([5, 6, 7, 8]);
    const ctl = (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE;
    expect(dma(h, ram, 0x1000, ctl, 4, 0x4000)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(text(fw.item(FW_CFG_SIGNATURE)!)).toBe("QEMU");
  });

  it("reports an error when the destination is not guest memory", () => {
    const ram = new FakeRam();
    const fw = new FwCfg({ dmaMemory: ram });
    const h = attach(fw);
    const ctl = (FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ;
    expect(dma(h, ram, 0x1000, ctl, 4, 0x20000)).toBe(FW_CFG_DMA_CTL_ERROR);
    expect(fw.dmaErrors).toBe(1);
  });
});
