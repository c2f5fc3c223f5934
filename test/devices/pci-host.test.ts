// PCI configuration mechanism #1 (0xCF8/0xCFC) and the i440FX host bridge at 00:00.0, driven the
// way Linux's arch/x86/pci/direct.c and early.c drive them.
import { describe, expect, it } from "vitest";
import { DeviceConfigError, I440FX_HOST_BRIDGE, PciHost } from "../../lib/devices/index.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { attach, type Harness } from "./helpers.js";

/** CONFIG_ADDRESS for bus/device/function/register, enable bit set */
const addr = (bus: number, dev: number, fn: number, reg: number) =>
  (0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;

/** Linux's read_pci_config(): outl to 0xCF8, then inl from 0xCFC */
function readConfig(h: Harness, bus: number, dev: number, fn: number, reg: number): number {
  h.outl(0xcf8, addr(bus, dev, fn, reg));
  return h.inl(0xcfc);
}

describe("PCI host (configuration mechanism #1)", () => {
  it("CONFIG_ADDRESS reads back a dword write (Linux's pci_check_type1)", () => {
    const h = attach(new PciHost());
    expect(h.inl(0xcf8)).toBe(0);
    h.outl(0xcf8, 0x80000000);
    expect(h.inl(0xcf8)).toBe(0x80000000);
  });

  it("byte and word accesses to CONFIG_ADDRESS pass through: writes ignored, reads all-ones", () => {
    const pci = new PciHost();
    const h = attach(pci);
    h.outl(0xcf8, addr(0, 0, 0, 0));
    h.outb(0xcf8, 0x00);
    h.outw(0xcf8, 0x1234);
    expect(pci.address).toBe(addr(0, 0, 0, 0));
    expect(h.inb(0xcf8)).toBe(0xff);
    expect(h.inw(0xcf8)).toBe(0xffff);
  });

  it("does not decode 0xCF9-0xCFB, the reset control register's and type-2 ports", () => {
    const pci = new PciHost();
    const io = pci.ranges.filter((r) => r.space === "io");
    for (const port of [0xcf9, 0xcfa, 0xcfb]) {
      expect(io.some((r) => port >= r.base && port < r.base + r.length)).toBe(false);
    }
  });

  it("00:00.0 is the i440FX host bridge: vendor/device, revision, class 06:00:00, header type 0", () => {
    const h = attach(new PciHost());
    expect(readConfig(h, 0, 0, 0, 0x00)).toBe(
      ((I440FX_HOST_BRIDGE.device << 16) | I440FX_HOST_BRIDGE.vendor) >>> 0,
    );
    expect(readConfig(h, 0, 0, 0, 0x08)).toBe(0x06000000 | I440FX_HOST_BRIDGE.revision);
    expect((readConfig(h, 0, 0, 0, 0x0c) >>> 16) & 0xff).toBe(0);
    // no BARs: sizing writes read back 0
    h.outl(0xcf8, addr(0, 0, 0, 0x10));
    h.outl(0xcfc, 0xffffffff);
    expect(h.inl(0xcfc)).toBe(0);
  });

  it("CONFIG_DATA serves bytes and words at the port's offset in the dword (pci_sanity_check's class read)", () => {
    const h = attach(new PciHost());
    h.outl(0xcf8, addr(0, 0, 0, 0x08));
    expect(h.inw(0xcfe)).toBe(0x0600); // PCI_CLASS_DEVICE
    expect(h.inb(0xcff)).toBe(0x06);
    expect(h.inb(0xcfc)).toBe(I440FX_HOST_BRIDGE.revision);
    h.outl(0xcf8, addr(0, 0, 0, 0x00));
    expect(h.inw(0xcfc)).toBe(I440FX_HOST_BRIDGE.vendor);
    expect(h.inw(0xcfe)).toBe(I440FX_HOST_BRIDGE.device);
  });

  it("absent functions and a clear enable bit read all-ones; their writes change nothing", () => {
    const h = attach(new PciHost());
    expect(readConfig(h, 0, 1, 0, 0)).toBe(0xffffffff);
    expect(readConfig(h, 0, 0, 1, 0)).toBe(0xffffffff);
    expect(readConfig(h, 255, 31, 7, 0)).toBe(0xffffffff);
    h.outl(0xcf8, addr(0, 0, 0, 0) & 0x7fffffff);
    expect(h.inl(0xcfc)).toBe(0xffffffff);
    expect(h.inw(0xcfe)).toBe(0xffff);
    h.outl(0xcfc, 0); // disabled: dropped
    expect(readConfig(h, 0, 0, 0, 0)).toBe(0x12378086);
  });

  it("the GART search's walk (256 buses x 32 slots) finds only the host bridge", () => {
    const h = attach(new PciHost());
    const found: string[] = [];
    for (let bus = 0; bus < 256; bus++)
      for (let slot = 0; slot < 32; slot++) {
        const v = readConfig(h, bus, slot, 0, 0x08);
        if (v !== 0xffffffff) found.push(`${bus}:${slot} ${v.toString(16)}`);
      }
    expect(found).toEqual(["0:0 6000002"]);
  });

  it("writes reach only the writable bits: command, cache line size, latency timer, interrupt line", () => {
    const pci = new PciHost();
    const h = attach(pci);
    h.outl(0xcf8, addr(0, 0, 0, 0x04));
    h.outw(0xcfc, 0xffff);
    expect(h.inw(0xcfc)).toBe(0x0547);
    h.outw(0xcfe, 0xffff); // status: nothing set, nothing to clear
    expect(h.inw(0xcfe)).toBe(0);
    h.outl(0xcf8, addr(0, 0, 0, 0x0c));
    h.outl(0xcfc, 0xffffffff);
    expect(h.inl(0xcfc)).toBe(0x0000ffff);
    h.outl(0xcf8, addr(0, 0, 0, 0x3c));
    h.outb(0xcfc, 11);
    expect(h.inl(0xcfc)).toBe(11);
    h.outl(0xcf8, addr(0, 0, 0, 0x00));
    h.outl(0xcfc, 0);
    expect(h.inl(0xcfc)).toBe(0x12378086);
    // a word at 0xCFE is the dword's upper half; a dword there has no bytes past 0xCFF to reach
    h.outl(0xcf8, addr(0, 0, 0, 0x0c));
    h.outl(0xcfe, 0);
    expect(h.inl(0xcfc)).toBe(0x0000ffff);
    expect(h.inl(0xcfe)).toBe(0xffff0000);
  });

  it("snapshot/restore keeps CONFIG_ADDRESS and what software wrote; reset forgets both", () => {
    const a = new PciHost();
    const ha = attach(a);
    ha.outl(0xcf8, addr(0, 0, 0, 0x04));
    ha.outw(0xcfc, 0x0007);
    const state = JSON.parse(JSON.stringify(a.snapshot()));
    const b = new PciHost();
    const hb = attach(b);
    b.restore(state);
    expect(b.address).toBe(addr(0, 0, 0, 0x04));
    expect(hb.inw(0xcfc)).toBe(0x0007);
    b.reset();
    expect(b.address).toBe(0);
    expect(readConfig(hb, 0, 0, 0, 0x04) & 0xffff).toBe(0);
  });

  it("rejects a state it cannot take and wrong options with DeviceConfigError", () => {
    const pci = new PciHost();
    expect(() => pci.restore({} as never)).toThrow(DeviceConfigError);
    expect(() => pci.restore({ address: 0, functions: [{ bdf: 8, config: [] }] })).toThrow(DeviceConfigError);
    expect(() => new PciHost({ hostBridge: "yes" as never })).toThrow(DeviceConfigError);
  });

  it("without the host bridge every function reads all-ones", () => {
    const h = attach(new PciHost({ hostBridge: false }));
    expect(readConfig(h, 0, 0, 0, 0)).toBe(0xffffffff);
    h.outl(0xcf8, 0x80000000);
    expect(h.inl(0xcf8)).toBe(0x80000000);
  });
});

describe("PCI host in the PC devices (soft backend)", () => {
  it("a guest reads the host bridge's class through 0xCF8/0xCFC; 0xCF9 still resets", async () => {
    const vm = await createMachine({ memoryMiB: 4, backend: "soft" });
    try {
      addPcDevices(vm);
      // mov dx,0xcf8; mov eax,0x80000008; out dx,eax; mov dx,0xcfc; in eax,dx; mov ebx,eax;
      // mov dx,0xcf9; mov al,6; out dx,al; cli; hlt
      vm.loadFlat(
        Uint8Array.from([
          0xba, 0xf8, 0x0c, 0x66, 0xb8, 0x08, 0x00, 0x00, 0x80, 0x66, 0xef, 0xba, 0xfc, 0x0c, 0x66, 0xed,
          0x66, 0x89, 0xc3, 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xfa, 0xf4,
        ]),
      );
      const r = await vm.run({ timeoutMs: 10_000 });
      expect(r.reason).toBe("reset");
      expect(Number(vm.vcpu(0).getRegs().rbx & 0xffffffffn)).toBe(0x06000002);
      expect(vm.io.unhandledReads + vm.io.unhandledWrites).toBe(0);
    } finally {
      vm.close();
    }
  });
});
