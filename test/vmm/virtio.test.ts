// virtio-mmio on a Machine: lib/vmm/virtio.ts picks windows and interrupt lines and writes the
// kernel command line, and a small real guest on the soft backend drives virtio-blk through its
// registers (test/vmm/guests/virtio-blk.S: negotiate, one queue, a read, a write, a flush, polling the
// used ring) with the disk image's contents checked afterwards.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DeviceConfigError } from "../../lib/devices/errors.js";
import { VirtioBlk, VirtioConsole, VirtioRng } from "../../lib/devices/virtio/index.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { GuestMemory } from "../../lib/vmm/memory.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { addVirtioDevice, addVirtioDevices, guestRam, VIRTIO_MMIO_BASE } from "../../lib/vmm/virtio.js";
import { unavailable } from "./available.js";

// guests/virtio-blk.S assembled (as --32; objcopy -O binary -j .text)
const VIRTIO_BLK_GUEST = Buffer.from(
  [
    "be000000d0b06d813e766972740f85d9030000b076837e04020f85cd030000b064837e08020f85c1030000c7467000000000",
    "c7467001000000c7467003000000b066c7461401000000f74610010000000f8496030000c7462401000000c7462001000000",
    "c7462400000000c7462000000000c746700b000000f74670080000000f8466030000b071c7463000000000837e34080f8253",
    "030000c7463808000000c7868000000000000100c7868400000000000000c7869000000000100100c7869400000000000000",
    "c786a000000000200100c786a400000000000000c7464401000000c746700f000000c7050030010000000000c70504300100",
    "00000000c7050830010001000000c7050c30010000000000c7050000010000300100c7050400010000000000c70508000100",
    "10000000c7050c00010001000100c7051000010000400100c7051400010000000000c7051800010000020000c7051c000100",
    "03000200c7052000010000500100c7052400010000000000c7052800010001000000c7052c00010002000000c60500500100",
    "ff66c70504100100000066c705021001000100c746500000000066833d022001000175f6b072803d00500100000f85290200",
    "00833d04200100000f851c020000813d08200100010200000f850c020000f74660010000000f84ff010000c7466401000000",
    "837e60000f85ee010000f61500400100c7051030010001000000c7051430010000000000c7051830010002000000c7051c30",
    "010000000000c7053000010010300100c7053400010000000000c7053800010010000000c7053c00010001000400c7054000",
    "010000400100c7054400010000000000c7054800010000020000c7054c00010001000500c7055000010001500100c7055400",
    "010000000000c7055800010001000000c7055c00010002000000c60501500100ff66c70506100100030066c7050210010002",
    "00c746500000000066833d022001000275f6b077803d01500100000f850f010000833d0c200100030f8502010000833d1020",
    "0100010f85f5000000f74660010000000f84e8000000c7466401000000837e60000f85d7000000c7052030010004000000c7",
    "052430010000000000c7052830010000000000c7052c30010000000000c7056000010020300100c7056400010000000000c7",
    "056800010010000000c7056c00010001000700c7057000010002500100c7057400010000000000c7057800010001000000c7",
    "057c00010002000000c60502500100ff66c70508100100060066c705021001000300c746500000000066833d022001000375",
    "f6b073803d0250010000752a833d14200100067521833d18200100017518f7466001000000740fc7466401000000837e6000",
    "7502b04be6e9faf4",
  ].join(""),
  "hex",
);

// guests/irq-hlt.S (as in guest-runs.test.ts): real mode; programs the 8259 pair (base 0x20, only
// IRQ 5 unmasked), STI and HLT until the IRQ 5 handler ran (it prints 'I' to 0xE9 and EOIs); CLI; HLT
const IRQ_HLT = Uint8Array.from([
  0x31, 0xc0, 0x8e, 0xd8, 0x31, 0xdb, 0xc7, 0x06, 0x94, 0x00, 0x2f, 0x7c, 0xc7, 0x06, 0x96, 0x00, 0x00, 0x00,
  0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xdf,
  0xe6, 0x21, 0xfb, 0xf4, 0x83, 0xfb, 0x01, 0x75, 0xfa, 0xfa, 0xf4, 0xb0, 0x49, 0xe6, 0xe9, 0xb0, 0x20, 0xe6,
  0x20, 0xbb, 0x01, 0x00, 0xcf,
]);

const dir = mkdtempSync(join(tmpdir(), "nodevmm-virtio-vm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** a disk image whose sector n is filled with byte (n + 1) */
function disk(sectors = 16): string {
  const p = join(dir, `disk${files++}.img`);
  const b = new Uint8Array(sectors * 512);
  for (let s = 0; s < sectors; s++) b.fill(s + 1, s * 512, s * 512 + 512);
  writeFileSync(p, b);
  return p;
}

const why = unavailable("soft");

describe("guestRam", () => {
  it("gives views of a region's own bytes and undefined outside RAM", () => {
    const mem = new GuestMemory();
    mem.addRegion(0, new Uint8Array(0x2000));
    mem.addRegion(0x10000, new Uint8Array(0x1000));
    const ram = guestRam(mem);
    ram.view(0x10010, 4)!.set([1, 2, 3, 4]);
    expect(mem.readU32(0x10010)).toBe(0x04030201);
    expect(ram.view(0x1ff0, 0x10)?.length).toBe(0x10);
    expect(ram.view(0x1ff0, 0x20)).toBeUndefined(); // runs into the hole
    expect(ram.view(0x3000, 1)).toBeUndefined();
    expect(ram.view(-1, 1)).toBeUndefined();
    expect(ram.view(2 ** 60, 1)).toBeUndefined();
  });
});

describe.skipIf(why !== undefined)(`virtio-mmio on a machine${why ? ` (skipped: ${why})` : ""}`, () => {
  async function withMachine(body: (vm: Machine) => Promise<void> | void): Promise<void> {
    const vm = await createMachine({ memoryMiB: 16, backend: "soft" });
    try {
      await body(vm);
    } finally {
      vm.close();
    }
  }

  it("gives each device its own 4 KiB window from 0xd0000000 and a free line, with command-line fragments", async () => {
    await withMachine((vm) => {
      addPcDevices(vm);
      const v = addVirtioDevices(vm, {
        drives: [{ path: disk() }, { path: disk(), readonly: true }],
        rng: true,
        console: {},
      });
      expect(v.blk).toHaveLength(2);
      expect(v.blk[1]!.readonly).toBe(true);
      expect(v.rng).toBeInstanceOf(VirtioRng);
      expect(v.console).toBeInstanceOf(VirtioConsole);
      expect(v.cmdline).toEqual([
        "virtio_mmio.device=4K@0xd0000000:5",
        "virtio_mmio.device=4K@0xd0001000:6",
        "virtio_mmio.device=4K@0xd0002000:7",
        "virtio_mmio.device=4K@0xd0003000:10",
      ]);
      for (const d of v.devices) expect(vm.devices).toContain(d);
      // the registers answer through the machine's MMIO bus
      expect(vm.mmio.bus.read(VIRTIO_MMIO_BASE, 4)).toBe(0x74726976);
      expect(vm.mmio.bus.read(VIRTIO_MMIO_BASE + 0x3008, 4)).toBe(3);
      // a later device takes the next window and line, skipping lines other devices hold
      const extra = addVirtioDevice(vm, (slot) => new VirtioRng(slot));
      expect(extra.cmdline).toBe("virtio_mmio.device=4K@0xd0004000:11");
      const fixed = addVirtioDevice(vm, (slot) => new VirtioRng(slot), { base: 0xd0100000, irq: 12 });
      expect(fixed.cmdline).toBe("virtio_mmio.device=4K@0xd0100000:12");
      expect(() => addVirtioDevice(vm, (slot) => new VirtioRng(slot), { irq: 24 })).toThrow(/0-23/);
    });
  });

  it("lines other devices use are skipped; a drive that cannot be opened attaches nothing", async () => {
    await withMachine((vm) => {
      vm.addDevice(new VirtioRng({ base: 0xd0000000, irq: 5, memory: guestRam(vm.memory) }));
      expect(() =>
        addVirtioDevices(vm, { drives: [{ path: disk() }, { path: join(dir, "missing.img") }], rng: true }),
      ).toThrow(DeviceConfigError);
      expect(vm.devices.filter((d) => d instanceof VirtioBlk)).toHaveLength(0);
      const v = addVirtioDevices(vm, { drives: [{ path: disk() }] });
      expect(v.cmdline).toEqual(["virtio_mmio.device=4K@0xd0001000:6"]);
    });
  });

  it("an MMIO read whose value is 2 (virtio's Version, the block DeviceID) completes", async () => {
    // mov 0xd0000004, %eax; cli; hlt
    await withMachine(async (vm) => {
      vm.addDevice(
        new VirtioBlk({ base: VIRTIO_MMIO_BASE, irq: 5, memory: guestRam(vm.memory), path: disk() }),
      );
      vm.loadFlat(Uint8Array.from([0xa1, 0x04, 0x00, 0x00, 0xd0, 0xfa, 0xf4]), { mode: "protected" });
      const r = vm.runSync({ timeoutMs: 20_000 });
      expect(r.reason).toBe("hlt");
      expect(vm.vcpu(0).getRegs().rax).toBe(2n);
      expect(vm.stats.byKind.get("mmio")?.count).toBe(1);
    });
  });

  it("a used-buffer interrupt wakes a halted guest through the soft backend's PIC (IRQ 5)", async () => {
    await withMachine(async (vm) => {
      const out: number[] = [];
      vm.io.onOut(0xe9, (_p, _s, v) => void out.push(v & 0xff));
      const { device: con, cmdline } = addVirtioDevice(vm, (slot) => new VirtioConsole(slot));
      expect(cmdline).toBe("virtio_mmio.device=4K@0xd0000000:5");
      // the host plays the driver: VERSION_1, receiveq at 0x20000 with one 16-byte buffer at 0x23000
      const w = (off: number, v: number) => vm.mmio.bus.write(VIRTIO_MMIO_BASE + off, 4, v);
      for (const [off, v] of [
        [0x70, 1],
        [0x70, 3],
        [0x24, 1],
        [0x20, 1],
        [0x24, 0],
        [0x20, 0],
        [0x70, 0xb],
        [0x30, 0],
        [0x38, 8],
        [0x80, 0x20000],
        [0x90, 0x21000],
        [0xa0, 0x22000],
        [0x44, 1],
        [0x70, 0xf],
      ] as const) {
        w(off, v);
      }
      vm.memory.writeU32(0x20000, 0x23000);
      vm.memory.writeU32(0x20008, 16);
      vm.memory.writeU16(0x2000c, 2); // VIRTQ_DESC_F_WRITE
      vm.memory.writeU16(0x21002, 1); // avail.idx: ring[0] = descriptor 0
      w(0x50, 0);
      // the guest programs the 8259 pair (only IRQ 5 unmasked), STI, HLT; its handler prints 'I'
      vm.loadFlat(IRQ_HLT);
      let sent = false;
      vm.on("exit", (e) => {
        if (e.kind !== "hlt" || sent) return;
        sent = true;
        setImmediate(() => con.receive(Buffer.from("hi")));
      });
      const r = await vm.run({ timeoutMs: 20_000 });
      expect(r.reason).toBe("hlt");
      expect(String.fromCharCode(...out)).toBe("I");
      expect(vm.memory.readU16(0x22002)).toBe(1); // used.idx
      expect(vm.memory.readU32(0x22008)).toBe(2); // used length
      expect(Buffer.from(vm.memory.read(0x23000, 2)).toString()).toBe("hi");
      expect(con.interruptStatus).toBe(1);
    });
  });

  it("a guest driver on the soft backend reads, writes and flushes the disk image through the registers", async () => {
    const path = disk();
    await withMachine(async (vm) => {
      const out: number[] = [];
      vm.io.onOut(0xe9, (_p, _s, v) => void out.push(v & 0xff));
      const broken: string[] = [];
      const v = addVirtioDevices(vm, {
        drives: [{ path }],
        onBroken: (d, m) => void broken.push(`${d}: ${m}`),
      });
      vm.loadFlat(VIRTIO_BLK_GUEST, { mode: "protected" });
      const r = await vm.run({ timeoutMs: 30_000 });
      expect(broken).toEqual([]);
      expect(String.fromCharCode(...out)).toBe("K");
      expect(r.reason).toBe("hlt");
      // the guest's buffer holds sector 1 with its first byte inverted ...
      expect(vm.memory.readU8(0x14000)).toBe(0xfd);
      expect(vm.memory.readU8(0x141ff)).toBe(2);
      expect(v.blk[0]!.broken).toBeUndefined();
    });
    // ... and so does sector 2 of the file; the rest is untouched
    const file = readFileSync(path);
    expect(file[2 * 512]).toBe(0xfd);
    expect(file.subarray(2 * 512 + 1, 3 * 512).every((x) => x === 2)).toBe(true);
    expect(file.subarray(512, 1024).every((x) => x === 2)).toBe(true);
    expect(file[3 * 512]).toBe(4);
  });
});

describe("the guest's bytes match its source", () => {
  let as: string | undefined;
  try {
    execFileSync("as", ["--version"], { stdio: "ignore" });
    execFileSync("objcopy", ["--version"], { stdio: "ignore" });
  } catch {
    as = "GNU as/objcopy are not installed";
  }
  it.skipIf(as !== undefined)(
    `guests/virtio-blk.S assembles to VIRTIO_BLK_GUEST${as ? ` (skipped: ${as})` : ""}`,
    () => {
      const tmp = mkdtempSync(join(tmpdir(), "nodevmm-virtio-as-"));
      try {
        const src = join(import.meta.dirname, "guests", "virtio-blk.S");
        execFileSync("as", ["--32", "-o", join(tmp, "x.o"), src]);
        execFileSync("objcopy", ["-O", "binary", "-j", ".text", join(tmp, "x.o"), join(tmp, "x.bin")]);
        expect(readFileSync(join(tmp, "x.bin")).equals(VIRTIO_BLK_GUEST)).toBe(true);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    },
  );
});
