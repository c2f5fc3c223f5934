// `format: "bios"`: a firmware image at the reset vector, as QEMU's -bios maps it, run from F000:FFF0
// on the software backend (KVM takes the same setSregs and a read-only slot: test/kvm/machine-bios).
import { describe, expect, it } from "vitest";
import {
  BootSetupError,
  biosPlacement,
  detectFormat,
  GuestImageError,
  loadBios,
  loadImage,
  resetEntry,
} from "../../lib/boot/index.js";
import { CPU_SIGNATURE } from "../../lib/vmm/backends/soft/cpuid.js";
import { MachineConfigError } from "../../lib/vmm/errors.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { GuestMemory } from "../../lib/vmm/memory.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { BIOS_ROM_OUTPUT, biosRom } from "./bios-rom.js";
import { isFilled, MiB, ram } from "./fixtures.js";

const KiB = 1024;

describe("biosPlacement", () => {
  it("puts the ROM just below 4 GiB and at most 128 KiB of it below 1 MiB", () => {
    expect(biosPlacement(new Uint8Array(64 * KiB))).toEqual({
      rom: 0xffff0000,
      isa: 0xf0000,
      isaSize: 64 * KiB,
    });
    expect(biosPlacement(new Uint8Array(128 * KiB))).toEqual({
      rom: 0xfffe0000,
      isa: 0xe0000,
      isaSize: 128 * KiB,
    });
    expect(biosPlacement(new Uint8Array(256 * KiB))).toEqual({
      rom: 0xfffc0000,
      isa: 0xe0000,
      isaSize: 128 * KiB,
    });
  });

  for (const size of [0, 512, 32 * KiB, 96 * KiB, 64 * KiB + 1, 512 * KiB, MiB]) {
    it(`refuses ${size} bytes with a GuestImageError naming the size`, () => {
      let caught: unknown;
      try {
        biosPlacement(new Uint8Array(size));
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(GuestImageError);
      expect((caught as GuestImageError).field).toBe("image");
      expect((caught as Error).message).toContain(`firmware size ${size} bytes`);
    });
  }

  it("is never what format auto picks", () => {
    for (const size of [64, 128, 256]) expect(detectFormat(biosRom(size * KiB))).not.toBe("bios");
  });
});

describe("loadBios on a loader target", () => {
  function romTarget(sizeMiB = 4) {
    const { mem, bytes } = ram(sizeMiB);
    const mapped: { gpa: number; bytes: Uint8Array }[] = [];
    const target = Object.assign(Object.create(null), {
      get size() {
        return mem.size;
      },
      regions: mem.regions,
      write: (g: number, d: Uint8Array) => mem.write(g, d),
      view: (g: number, l: number) => mem.view(g, l),
      find: (g: number, l?: number) => mem.find(g, l),
      mapRom: (gpa: number, b: Uint8Array) => {
        mapped.push({ gpa, bytes: b.slice() });
      },
    });
    return { mem, bytes, mapped, target };
  }

  it("maps a 256 KiB image below 4 GiB and copies its last 128 KiB to 0xE0000, reset state at F000:FFF0", () => {
    const { mem, mapped, target } = romTarget();
    const image = biosRom(256 * KiB);
    const r = loadImage(target, image, { format: "bios" });
    expect(r.format).toBe("bios");
    expect(mapped).toEqual([{ gpa: 0xfffc0000, bytes: image }]);
    expect(mem.read(0xe0000, 128 * KiB)).toEqual(image.subarray(128 * KiB));
    expect(mem.readU8(0xe0000)).toBe(3); // the third 64 KiB page of the image
    expect(r.loaded).toEqual([{ gpa: 0xe0000, size: 128 * KiB, fileSize: 128 * KiB }]);
    expect(r.rom).toEqual({ gpa: 0xfffc0000, size: 256 * KiB, fileSize: 256 * KiB });
    expect(r.entry.mode).toBe("real");
    expect(r.entry.regs.rip).toBe(0xfff0n);
    expect(r.entry.sregs.cs).toMatchObject({ selector: 0xf000, base: 0xffff0000n, limit: 0xffff });
    expect(r.entry.sregs.ds).toMatchObject({ selector: 0, base: 0n, limit: 0xffff });
    expect(r.entry.sregs.cr0).toBe(0x60000010n);
    expect(r.entry.sregs.idt).toEqual({ base: 0n, limit: 0xffff });
    expect(r.entry.regs.rdx ?? 0n).toBe(0n);
    expect(resetEntry(0x000806ec).regs.rdx).toBe(0x806ecn);
  });

  it("without a way to map ROM, or without RAM up to 1 MiB, is a BootSetupError and writes nothing", () => {
    const { mem, bytes } = ram();
    expect(() => loadBios(mem, biosRom())).toThrow(BootSetupError);
    expect(isFilled(bytes)).toBe(true);
    const small = new GuestMemory();
    const low = new Uint8Array(512 * KiB).fill(0xaa);
    small.addRegion(0, low);
    const mapped: number[] = [];
    const target = {
      size: small.size,
      regions: small.regions,
      write: (g: number, d: Uint8Array) => small.write(g, d),
      view: (g: number, l: number) => small.view(g, l),
      find: (g: number, l?: number) => small.find(g, l),
      mapRom: (gpa: number) => mapped.push(gpa),
    };
    expect(() => loadBios(target, biosRom())).toThrow(/RAM at \[0xf0000/);
    expect(mapped).toEqual([]);
    expect(isFilled(low)).toBe(true);
  });
});

describe("a firmware image on the soft backend (createMachine)", () => {
  for (const size of [64, 128, 256]) {
    it(`runs a ${size} KiB ROM from F000:FFF0: its writes to ROM are dropped, it prints and halts`, async () => {
      const vm = await createMachine({ memoryMiB: 16, backend: "soft" });
      try {
        const con: number[] = [];
        addPcDevices(vm, { debugcon: (b) => con.push(...b) });
        const writes: number[] = [];
        vm.on("exit", (e) => {
          if (e.kind === "mmio" && e.write) writes.push(e.address);
        });
        const r = vm.load(biosRom(size * KiB), { format: "bios" });
        expect(r.format).toBe("bios");
        const s = vm.vcpu(0).getSregs();
        expect(s.cs.selector).toBe(0xf000);
        expect(s.cs.base).toBe(0xffff0000n);
        expect(vm.vcpu(0).getRegs().rip).toBe(0xfff0n);
        // EDX after RESET: the processor signature, CPUID.1:EAX
        expect(vm.vcpu(0).getRegs().rdx).toBe(BigInt(CPU_SIGNATURE));
        const result = await vm.run({ timeoutMs: 20_000 });
        expect(result.reason).toBe("hlt");
        expect(Buffer.from(con).toString()).toBe(BIOS_ROM_OUTPUT);
        // the one write to ROM exited (EPT without write permission) and went nowhere
        expect(writes).toEqual([0xfffff000]);
        // after the far jump the CPU runs the copy below 1 MiB
        const after = vm.vcpu(0).getSregs();
        expect(after.cs.base).toBe(0xf0000n);
        expect(vm.vcpu(0).getRegs().rip).toBe(0xe111n);
      } finally {
        vm.close();
      }
    });
  }

  it("soft vCPU threads cannot see a ROM mapped after they started: refused, nothing written", async () => {
    const vm = await createMachine({ memoryMiB: 16, backend: "soft", vcpuThread: true });
    try {
      expect(() => vm.load(biosRom(), { format: "bios" })).toThrow(MachineConfigError);
      expect(vm.memory.read(0xf0000, 0x10000).every((b) => b === 0)).toBe(true);
    } finally {
      vm.close();
    }
  });

  it("a machine takes its firmware once", async () => {
    const vm = await createMachine({ memoryMiB: 16, backend: "soft" });
    try {
      vm.load(biosRom(), { format: "bios" });
      expect(() => vm.load(biosRom(), { format: "bios" })).toThrow(/once/);
    } finally {
      vm.close();
    }
  });
});
