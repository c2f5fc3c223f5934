// Every device class lib/index.ts exports, the APIC family (LocalApic, IoApic, ApicTimer,
// PcInterrupts and the page that serves the local APICs) included, and addPcDevices, checks its
// options when it is made: a null, missing-where-required or wrong-typed option is a DeviceConfigError
// (a VmmError with code ERR_VMM_DEVICE_CONFIG, still a RangeError) that names the option, never an
// engine TypeError then or when the guest first touches the device. Found by `npm run fuzz` (target
// "api"), issue 14.

import { describe, expect, it } from "vitest";
import { LapicPage } from "../../lib/devices/index.js";
import * as api from "../../lib/index.js";
import { DeviceConfigError, VmmError } from "../../lib/index.js";
import { FakeRam } from "./virtio/driver.js";

type Kind =
  | "port"
  | "int"
  | "positive"
  | "bool"
  | "fn"
  | "output"
  | "string"
  | "bytes"
  | "object"
  | "instance"
  | "array"
  | "date";

const noProto = (): unknown => Object.create(null);
const NOT_A_NUMBER: unknown[] = [null, Number.NaN, "1", 1.5, -1, 1n, {}, noProto(), true, [], 2 ** 53];
const BAD: Record<Kind, unknown[]> = {
  port: [...NOT_A_NUMBER, 0x10000],
  int: NOT_A_NUMBER,
  positive: [null, Number.NaN, "1", 0, -1, -0.5, 1n, {}, noProto(), true, [], Number.POSITIVE_INFINITY],
  bool: [null, "yes", 1, 0, {}, noProto()],
  fn: [null, 5, "f", {}, noProto()],
  output: [
    null,
    5,
    "out",
    {},
    noProto(),
    { write: 5 },
    { path: 5 },
    { path: "" },
    { path: "x", append: "yes" },
  ],
  string: [null, 5, {}, noProto(), Symbol("s")],
  bytes: [null, "x", [1, 2], {}, noProto()],
  object: [null, 5, "x", []],
  /** an object of a given class (a device handed to another) */
  instance: [null, 5, "x", [], {}, noProto()],
  array: [null, 5, "x", {}, [null], [{ addr: -1, size: 1, type: 1 }]],
  date: [null, 5, "2020-01-01", {}, noProto(), new Date(Number.NaN)],
};

interface DeviceCase {
  make(opts: unknown): unknown;
  /** options every construction gets (virtio's required base, irq and memory) */
  base?: Record<string, unknown>;
  options: Record<string, Kind>;
  /** the options argument itself may be left out */
  optional: boolean;
}

const ram = new FakeRam().ram;
const virtio = { base: 0xd0000000, irq: 5, memory: ram };
const image = {
  size: 4096,
  readonly: false,
  read() {},
  write() {},
  flush() {},
  close() {},
};

const DEVICES: Record<string, DeviceCase> = {
  Uart16550: {
    make: (o) => new api.Uart16550(o as never),
    options: {
      base: "port",
      irq: "int",
      output: "output",
      onInputSpace: "fn",
      modem: "object",
      name: "string",
    },
    optional: true,
  },
  DebugExit: {
    make: (o) => new api.DebugExit(o as never),
    options: { port: "port", size: "int" },
    optional: true,
  },
  DebugConsole: {
    make: (o) => new api.DebugConsole(o as never),
    options: { port: "port", output: "output", readback: "int" },
    optional: true,
  },
  PostPort: {
    make: (o) => new api.PostPort(o as never),
    options: { port: "port", historyLength: "int", onCode: "fn" },
    optional: true,
  },
  CmosRtc: {
    make: (o) => new api.CmosRtc(o as never),
    options: {
      memoryBytes: "int",
      belowFourGiB: "int",
      cpus: "int",
      timeSource: "string",
      startTime: "date",
      irq: "int",
      nvram: "object",
    },
    optional: true,
  },
  I8042: {
    make: (o) => new api.I8042(o as never),
    options: { irq: "int", onA20: "fn", a20: "bool" },
    optional: true,
  },
  I8254: {
    make: (o) => new api.I8254(o as never),
    options: { base: "port", irq: "int", speakerPort: "bool" },
    optional: true,
  },
  I8259Pair: {
    make: (o) => new api.I8259Pair(o as never),
    options: { onIntrChange: "fn", elcr: "bool" },
    optional: true,
  },
  FwCfg: {
    make: (o) => new api.FwCfg(o as never),
    options: {
      ramBytes: "int",
      cpus: "int",
      maxCpus: "int",
      uuid: "bytes",
      nographic: "bool",
      kernel: "object",
      setup: "object",
      initrd: "object",
      cmdline: "string",
      cmdlineAddr: "int",
      e820: "array",
      files: "object",
      dmaMemory: "object",
      base: "port",
      dmaBase: "port",
    },
    optional: true,
  },
  AcpiPm: {
    make: (o) => new api.AcpiPm(o as never),
    options: { base: "port", irq: "int", s5SlpTyp: "int" },
    optional: true,
  },
  ResetControl: { make: (o) => new api.ResetControl(o as never), options: { port: "port" }, optional: true },
  SystemControlPortA: {
    make: (o) => new api.SystemControlPortA(o as never),
    options: { port: "port", a20: "bool", onA20: "fn" },
    optional: true,
  },
  LocalApic: {
    make: (o) => new api.LocalApic(o as never),
    options: { id: "int", base: "int", busHz: "positive", onEoi: "fn", hardwareEnabled: "fn" },
    optional: true,
  },
  IoApic: {
    make: (o) => new api.IoApic(o as never),
    options: { base: "int", id: "int", deliver: "fn" },
    optional: true,
  },
  PcInterrupts: {
    make: (o) => new api.PcInterrupts(o as never),
    options: { cpus: "int", irq0Pin: "int", i8259: "instance", ioapic: "instance", lapic: "instance" },
    optional: true,
  },
  VirtioRng: {
    make: (o) => new api.VirtioRng(o as never),
    base: virtio,
    options: { base: "int", irq: "int", memory: "object", onBroken: "fn", source: "fn", queueSize: "int" },
    optional: false,
  },
  VirtioConsole: {
    make: (o) => new api.VirtioConsole(o as never),
    base: virtio,
    options: {
      base: "int",
      irq: "int",
      memory: "object",
      output: "output",
      onInputSpace: "fn",
      inputBuffer: "int",
      queueSize: "int",
    },
    optional: false,
  },
  VirtioBlk: {
    make: (o) => new api.VirtioBlk(o as never),
    base: { ...virtio, image },
    options: { image: "object", readonly: "bool", serial: "string", queueSize: "int", path: "string" },
    optional: false,
  },
};

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectConfigError(e: unknown, option: string, what: string): void {
  expect(e, what).toBeInstanceOf(DeviceConfigError);
  const err = e as DeviceConfigError;
  expect(err.option, `${what}: ${err.message}`).toBe(option);
  expect(err.message).toContain(option);
  expect(err).toBeInstanceOf(VmmError);
  expect(err).toBeInstanceOf(RangeError);
  expect(err.code).toBe("ERR_VMM_DEVICE_CONFIG");
}

describe("device constructors check their options", () => {
  for (const [name, c] of Object.entries(DEVICES)) {
    describe(name, () => {
      it("builds with good options", () => {
        expect(() => c.make(c.base ?? {})).not.toThrow();
        if (c.optional) {
          expect(() => c.make(undefined)).not.toThrow();
          expect(() => c.make(Object.create(null))).not.toThrow();
        }
      });

      it("refuses an options argument that is not an object, naming it", () => {
        for (const v of [null, 5, "x", true, [1]])
          expectConfigError(
            thrown(() => c.make(v)),
            "options",
            String(v),
          );
        if (!c.optional)
          expectConfigError(
            thrown(() => c.make(undefined)),
            "options",
            "undefined",
          );
      });

      for (const [key, kind] of Object.entries(c.options)) {
        it(`refuses a wrong ${key} (${kind}), naming it`, () => {
          for (const v of BAD[kind]) {
            const e = thrown(() => c.make({ ...c.base, [key]: v }));
            // a nested field (modem.cts, kernel.data, e820[0]) is named from the option down
            expect(e, `${key} = ${typeof v}`).toBeInstanceOf(DeviceConfigError);
            const option = (e as DeviceConfigError).option;
            expect(
              option === key || option.startsWith(`${key}.`) || option.startsWith(`${key}[`),
              option,
            ).toBe(true);
            expect((e as DeviceConfigError).code).toBe("ERR_VMM_DEVICE_CONFIG");
          }
        });
      }
    });
  }

  it("names nested fields: modem lines, fw_cfg blobs and e820 entries, nvram entries", () => {
    expectConfigError(
      thrown(() => new api.Uart16550({ modem: { cts: 1 as never } })),
      "modem.cts",
      "modem.cts",
    );
    expectConfigError(
      thrown(() => new api.FwCfg({ kernel: { data: "x" as never } })),
      "kernel.data",
      "kernel.data",
    );
    expectConfigError(
      thrown(() => new api.FwCfg({ initrd: { data: new Uint8Array(1), addr: -4 } })),
      "initrd.addr",
      "initrd.addr",
    );
    expectConfigError(
      thrown(() => new api.FwCfg({ e820: [null as never] })),
      "e820[0]",
      "e820[0]",
    );
    expectConfigError(
      thrown(() => new api.CmosRtc({ nvram: { 3: 256 } })),
      "nvram",
      "nvram",
    );
    // fw_cfg's own subclass, as before
    expect(thrown(() => new api.FwCfg({ uuid: new Uint8Array(3) }))).toBeInstanceOf(api.FwCfgError);
  });

  it("the issue's cases: Uart16550(null), I8254({ base: <object without a prototype> }), output: 5", () => {
    expectConfigError(
      thrown(() => new api.Uart16550(null as never)),
      "options",
      "null",
    );
    expectConfigError(
      thrown(() => new api.I8254({ base: Object.create(null) })),
      "base",
      "base",
    );
    expectConfigError(
      thrown(() => new api.Uart16550({ output: 5 as never })),
      "output",
      "output",
    );
    expectConfigError(
      thrown(() => new api.DebugConsole({ output: 5 as never })),
      "output",
      "output",
    );
  });

  it("accepted options take effect", () => {
    const chunks: Uint8Array[] = [];
    const uart = new api.Uart16550({ base: 0x2f8, irq: 3, output: (b) => chunks.push(b), name: "com2" });
    expect(uart.ranges[0]).toEqual({ space: "io", base: 0x2f8, length: 8 });
    expect(uart.irq).toBe(3);
    expect(uart.name).toBe("com2");
    uart.write(0, 1, 0x41);
    expect(chunks.map((c) => [...c])).toEqual([[0x41]]);
    expect(new api.I8254({ speakerPort: false }).ranges).toHaveLength(1);
    expect(new api.DebugExit({ port: 0x501, size: 2 }).ranges[0]).toEqual({
      space: "io",
      base: 0x501,
      length: 2,
    });
  });
});

describe("the APIC family: IDs, page bases, bus frequency and CPU counts in range", () => {
  const cases: [string, () => unknown, string][] = [
    // xAPIC IDs are 8 bits; the I/O APIC's ID register holds 4 (bits 27:24)
    ["LocalApic id 256", () => new api.LocalApic({ id: 256 }), "id"],
    ["IoApic id 16", () => new api.IoApic({ id: 16 }), "id"],
    // register pages are 4 KiB-aligned below 4 GiB
    ["LocalApic base not page-aligned", () => new api.LocalApic({ base: 0xfee00010 }), "base"],
    ["LocalApic base above 4 GiB", () => new api.LocalApic({ base: 0x1_0000_0000 }), "base"],
    ["IoApic base not page-aligned", () => new api.IoApic({ base: 0xfec00400 }), "base"],
    ["IoApic base above 4 GiB", () => new api.IoApic({ base: 0x1_fec0_0000 }), "base"],
    ["LocalApic busHz 0", () => new api.LocalApic({ busHz: 0 }), "busHz"],
    ["ApicTimer busHz 0", () => new api.ApicTimer(0), "busHz"],
    ["ApicTimer busHz as a string", () => new api.ApicTimer("1e9" as never), "busHz"],
    ["PcInterrupts cpus 0", () => new api.PcInterrupts({ cpus: 0 }), "cpus"],
    ["PcInterrupts cpus 256 (0xFF is the broadcast ID)", () => new api.PcInterrupts({ cpus: 256 }), "cpus"],
    ["PcInterrupts irq0Pin 24", () => new api.PcInterrupts({ irq0Pin: 24 }), "irq0Pin"],
    // CPU 0's APIC: the others are made with IDs 1..cpus-1
    [
      "PcInterrupts lapic with APIC ID 1",
      () => new api.PcInterrupts({ cpus: 2, lapic: new api.LocalApic({ id: 1 }) }),
      "lapic",
    ],
    [
      "PcInterrupts ioapic of another class",
      () => new api.PcInterrupts({ ioapic: new api.I8254() as never }),
      "ioapic",
    ],
  ];
  for (const [what, make, option] of cases) {
    it(`refuses ${what}, naming ${option}`, () => {
      expectConfigError(thrown(make), option, what);
    });
  }

  it("the page that serves every CPU's local APIC takes LocalApics at one base with distinct IDs", () => {
    const cpu0 = new api.LocalApic({ id: 0 });
    expect(() => new LapicPage([cpu0, new api.LocalApic({ id: 1 })])).not.toThrow();
    expectConfigError(
      thrown(() => new LapicPage(null as never)),
      "lapics",
      "null",
    );
    expectConfigError(
      thrown(() => new LapicPage([])),
      "lapics",
      "empty",
    );
    expectConfigError(
      thrown(() => new LapicPage([cpu0, {} as never])),
      "lapics[1]",
      "not a LocalApic",
    );
    expectConfigError(
      thrown(() => new LapicPage([cpu0, new api.LocalApic({ id: 0 })])),
      "lapics[1]",
      "same APIC ID",
    );
    expectConfigError(
      thrown(() => new LapicPage([cpu0, new api.LocalApic({ id: 1, base: 0xfed00000 })])),
      "lapics[1]",
      "another base",
    );
    const pc = new api.PcInterrupts({ cpus: 2 });
    expectConfigError(
      thrown(() => {
        pc.currentCpu = 2;
      }),
      "currentCpu",
      "CPU 2 of 2",
    );
    expectConfigError(
      thrown(() => {
        pc.currentCpu = Object.create(null);
      }),
      "currentCpu",
      "an object without a prototype",
    );
  });

  it("accepted options take effect", () => {
    const lapic = new api.LocalApic({ id: 7, base: 0xfed00000, busHz: 100_000_000 });
    expect(lapic.ranges).toEqual([{ space: "mmio", base: 0xfed00000, length: 0x1000 }]);
    // APIC ID register, bits 31:24
    expect(lapic.read(0x20, 4, 0) >>> 24).toBe(7);
    const ioapic = new api.IoApic({ id: 5, base: 0xfec01000 });
    expect(ioapic.ranges).toEqual([{ space: "mmio", base: 0xfec01000, length: 0x1000 }]);
    ioapic.write(0, 4, 0, 0); // IOREGSEL: the ID register
    expect((ioapic.read(0x10, 4, 0) >>> 24) & 0xf).toBe(5);
    const cpu0 = new api.LocalApic({ base: 0xfed00000 });
    const pc = new api.PcInterrupts({ cpus: 3, lapic: cpu0, ioapic });
    expect(pc.lapic).toBe(cpu0);
    expect(pc.ioapic).toBe(ioapic);
    // the other CPUs' APICs sit at CPU 0's base
    expect(pc.lapics.map((a) => [a.x2apicId, a.ranges[0]!.base])).toEqual([
      [0, 0xfed00000],
      [1, 0xfed00000],
      [2, 0xfed00000],
    ]);
    expect(new api.ApicTimer(1e8).busHz).toBe(1e8);
  });
});

describe("PicChip and Virtqueue check their arguments", () => {
  it("PicChip(isMaster, elcrMask)", () => {
    expect(() => new api.PicChip(true, 0xf8)).not.toThrow();
    expectConfigError(
      thrown(() => new api.PicChip(null as never, 0)),
      "isMaster",
      "isMaster",
    );
    expectConfigError(
      thrown(() => new api.PicChip(true, Object.create(null))),
      "elcrMask",
      "elcrMask",
    );
  });

  it("Virtqueue(ram, layout, opts)", () => {
    const layout = { size: 8, desc: 0x1000, driver: 0x2000, device: 0x3000 };
    expect(() => new api.Virtqueue(ram, layout)).not.toThrow();
    expectConfigError(
      thrown(() => new api.Virtqueue(null as never, layout)),
      "ram",
      "ram",
    );
    expectConfigError(
      thrown(() => new api.Virtqueue(ram, null as never)),
      "layout",
      "layout",
    );
    expectConfigError(
      thrown(() => new api.Virtqueue(ram, { ...layout, desc: Object.create(null) })),
      "layout.desc",
      "layout.desc",
    );
    expectConfigError(
      thrown(() => new api.Virtqueue(ram, layout, { indirect: 1 as never })),
      "indirect",
      "indirect",
    );
    // a layout the guest got wrong stays a VirtqueueError (a VmmError too)
    const e = thrown(() => new api.Virtqueue(ram, { ...layout, size: 3 }));
    expect(e).toBeInstanceOf(api.VirtqueueError);
    expect(e).toMatchObject({ code: "ERR_VMM_VIRTQUEUE" });
    expect(e).toBeInstanceOf(VmmError);
  });

  it("openDiskImage(path, opts)", () => {
    expectConfigError(
      thrown(() => api.openDiskImage(5 as never)),
      "path",
      "path",
    );
    expectConfigError(
      thrown(() => api.openDiskImage("/nonexistent", null as never)),
      "options",
      "options",
    );
  });
});

describe("addPcDevices checks its options before it adds a device", () => {
  it("a wrong option is an InvalidArgumentError naming options.<name>, and the machine stays bare", async () => {
    const vm = await api.createMachine({ backend: "soft", memoryMiB: 2 });
    // the soft machine's own interrupt controllers
    const before = vm.devices.length;
    try {
      const cases: [string, unknown][] = [
        ["serial", 5],
        ["serial", { write: "x" }],
        ["debugcon", Object.create(null)],
        ["cmdline", 1],
        ["coalesce", "yes"],
        ["onSerialInputSpace", {}],
      ];
      for (const [key, value] of cases) {
        const e = thrown(() => api.addPcDevices(vm, { [key]: value } as never));
        expect(e, key).toBeInstanceOf(api.InvalidArgumentError);
        expect(e).toMatchObject({ argument: `options.${key}`, code: "ERR_VMM_INVALID_ARGUMENT" });
        expect(vm.devices).toHaveLength(before);
      }
      expect(thrown(() => api.addPcDevices(vm, null as never))).toBeInstanceOf(api.InvalidArgumentError);
      expect(thrown(() => api.addPcDevices(null as never))).toBeInstanceOf(api.InvalidArgumentError);
      const chunks: Uint8Array[] = [];
      const pc = api.addPcDevices(vm, { serial: (b) => chunks.push(b), cmdline: "x", coalesce: false });
      expect(pc.uart).toBeInstanceOf(api.Uart16550);
    } finally {
      vm.close();
    }
  });
});
