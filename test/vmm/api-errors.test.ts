// The public API (lib/index.ts) refuses wrong arguments with nodevmm's own errors naming the
// argument (never an engine TypeError, even for objects without a prototype), checks handlers and
// devices when they are registered, stops runs on an AbortSignal, closes on Symbol.dispose, and
// refuses register and memory access after close(). Soft backend: runs on any host.

import { afterEach, describe, expect, it } from "vitest";
import * as api from "../../lib/index.js";
import { describeValue } from "../../lib/vmm/validate.js";

const machines: api.Machine[] = [];
afterEach(() => {
  for (const vm of machines.splice(0)) vm.close();
});
async function soft(): Promise<api.Machine> {
  const vm = await api.createMachine({ backend: "soft", memoryMiB: 2 });
  machines.push(vm);
  return vm;
}

const bare = () => Object.create(null) as never;
/** values no argument of the API accepts in place of an object, a number or a function */
const WRONG: [string, unknown][] = [
  ["null", null],
  ["a string", "x"],
  ["an object without a prototype", Object.create(null)],
  ["a bigint", 1n],
];

/** Asserts `call` throws an InvalidArgumentError naming `argument`. */
async function refuses(call: () => unknown, argument: string): Promise<api.InvalidArgumentError> {
  let error: unknown;
  try {
    await call();
  } catch (e) {
    error = e;
  }
  expect(error, "the call threw").toBeInstanceOf(api.InvalidArgumentError);
  const e = error as api.InvalidArgumentError;
  expect(e).toBeInstanceOf(api.VmmError);
  expect(e.code).toBe("ERR_VMM_INVALID_ARGUMENT");
  expect(e.argument).toBe(argument);
  expect(e.message).toContain(argument);
  return e;
}

describe("describeValue", () => {
  it("describes anything without throwing", () => {
    expect(describeValue(Object.create(null))).toBe("an object without a prototype");
    expect(describeValue(null)).toBe("null");
    expect(describeValue("x")).toBe('the string "x"');
    expect(describeValue(5n)).toBe("the bigint 5n");
    expect(describeValue(new Uint16Array(2))).toBe("a Uint16Array");
    const hostile = new Proxy(
      {},
      {
        getPrototypeOf: () => {
          throw new Error("no");
        },
      },
    );
    expect(describeValue(hostile)).toBe("object");
  });
});

describe("createMachine", () => {
  it("refuses options that are not an object", async () => {
    for (const [, v] of WRONG.filter(([n]) => n !== "an object without a prototype")) {
      await refuses(() => api.createMachine(v as never), "options");
    }
  });
  it("names the option that is wrong, whatever its value", async () => {
    await refuses(() => api.createMachine({ backend: "soft", vcpus: bare() }), "opts.vcpus");
    await refuses(() => api.createMachine({ backend: "soft", memoryMiB: "64" as never }), "opts.memoryMiB");
    await refuses(() => api.createMachine({ backend: "sfot" as never }), "opts.backend");
    await refuses(() => api.createMachine({ backend: "soft", strict: 1 as never }), "opts.strict");
    await refuses(() => api.createMachine({ backend: "soft", vcpuThread: bare() }), "opts.vcpuThread");
  });
  it("an unsupported vCPU count is still a MachineConfigError", async () => {
    await expect(api.createMachine({ backend: "soft", vcpus: 65 })).rejects.toBeInstanceOf(
      api.MachineConfigError,
    );
  });
});

describe("Machine methods", () => {
  it("addDevice checks the device, its ranges and handlers before claiming anything", async () => {
    const vm = await soft();
    await refuses(() => vm.addDevice(null as never), "device");
    await refuses(() => vm.addDevice({} as never), "device.name");
    await refuses(() => vm.addDevice({ name: "d" } as never), "device.ranges");
    const range = { space: "io", base: 0x500, length: 1 };
    await refuses(
      () => vm.addDevice({ name: "d", ranges: [{ ...range, space: "pci" }] } as never),
      "device.ranges[0].space",
    );
    await refuses(
      () => vm.addDevice({ name: "d", ranges: [{ ...range, base: bare() }] } as never),
      "device.ranges[0].base",
    );
    await refuses(() => vm.addDevice({ name: "d", ranges: [range] } as never), "device.read");
    await refuses(
      () => vm.addDevice({ name: "d", ranges: [range], read: () => 0, write: "no" } as never),
      "device.write",
    );
    // nothing was claimed by the refused devices
    expect(vm.io.read(0x500, 1)).toBe(0xff);
    vm.addDevice({ name: "d", ranges: [range], read: () => 7, write: () => {} } as never);
    expect(vm.io.read(0x500, 1)).toBe(7);
  });

  it("loaders check the image and their options", async () => {
    const vm = await soft();
    const img = new Uint8Array([0xf4]);
    await refuses(() => vm.loadFlat(img, null as never), "opts");
    await refuses(() => vm.loadFlat(null as never), "image");
    await refuses(() => vm.loadFlat(img, { mode: bare() }), "opts.mode");
    await refuses(() => vm.loadFlat(img, { address: "0x1000" as never }), "opts.address");
    await refuses(() => vm.load(img, { format: "exe" as never }), "opts.format");
    await refuses(() => vm.loadMultiboot(img, { cmdline: 5 as never }), "opts.cmdline");
    await refuses(() => vm.loadLinux(null as never), "opts");
    await refuses(() => vm.loadLinux({} as never), "opts.kernel");
    expect(vm.loadFlat(img, { address: 0x1000, mode: "long" }).format).toBe("flat");
  });

  it("run and runSync check their limits", async () => {
    const vm = await soft();
    await refuses(() => vm.run(null as never), "limits");
    await refuses(() => vm.runSync({ timeoutMs: bare() }), "limits.timeoutMs");
    await refuses(() => vm.run({ maxExits: -1 }), "limits.maxExits");
    await refuses(() => vm.run({ signal: {} as never }), "limits.signal");
    expect(vm.running).toBe(false);
  });

  it("events, exit handlers, IRQ lines and vCPU indexes", async () => {
    const vm = await soft();
    await refuses(() => vm.on("exit", null as never), "fn");
    await refuses(() => vm.on("exits" as never, (() => {}) as never), "event");
    await refuses(() => vm.once("exit", 5 as never), "fn");
    await refuses(() => vm.setExitHandler("hlts" as never, () => undefined), "kind");
    await refuses(() => vm.setExitHandler("hlt", null as never), "handler");
    await refuses(() => vm.irqLine(bare()), "line");
    await refuses(() => vm.irqLine(4).set("high" as never), "level");
    await refuses(() => vm.vcpu("0" as never), "i");
    await refuses(() => vm.coalesceWrites("pio" as never, 0x80), "space");
    await refuses(() => {
      vm.strict = "yes" as never;
    }, "strict");
  });

  it("bus handlers are checked when registered, in both argument orders of mmio", async () => {
    const vm = await soft();
    await refuses(() => vm.io.onIn(0x60, null as never), "handler");
    await refuses(() => vm.io.onOut(bare(), () => {}), "port");
    await refuses(() => vm.io.onOut(0xffff, () => {}, 2), "length");
    await refuses(() => vm.mmio.onRead(0xfe000000, bare(), () => 0), "length");
    await refuses(() => vm.mmio.onWrite(0xfe000000, 4, "f" as never), "handler");
    await refuses(() => vm.io.read(0x60, 3 as never), "size");
    // (address, handler, length) and (address, length, handler) register the same
    vm.mmio.onRead(0xfe000000, (a) => a & 0xff, 0x10);
    vm.mmio.onRead(0xfe001000, 0x10, (a) => a & 0xff);
    expect(() => vm.mmio.onRead(0xfe00000f, () => 0)).toThrow(api.BusConflictError);
    expect(() => vm.mmio.onRead(0xfe00100f, () => 0)).toThrow(api.BusConflictError);
  });

  it("vCPU calls: translate, dump, disassemble, MSRs", async () => {
    const vm = await soft();
    const cpu = vm.vcpu(0);
    await refuses(() => cpu.translate(null as never), "gva");
    await refuses(() => cpu.translate(-1), "gva");
    await refuses(() => cpu.dump(null as never), "opts");
    await refuses(() => cpu.disassemble(bare()), "count");
    await refuses(() => cpu.getMsr("0x10" as never), "index");
    expect(() => cpu.setRegs({ rip: "x" as never })).toThrow(api.RegisterValueError);
    expect(cpu.translate(0x1000n).physical).toBeDefined();
  });

  it("guest memory and addPcDevices", async () => {
    const vm = await soft();
    await refuses(() => vm.memory.write(0, null as never), "data");
    await refuses(() => vm.memory.read(bare(), 4), "gpa");
    await refuses(() => vm.memory.view(0, "4" as never), "length");
    await refuses(() => api.addPcDevices(vm, null as never), "options");
  });

  it("device constructors with null options: CmosRtc", () => {
    expect(() => new api.CmosRtc(null as never)).toThrow(api.DeviceConfigError);
  });
});

describe("errors", () => {
  it("every error class is a VmmError with a stable code", () => {
    const cases: [api.VmmError, string][] = [
      [new api.GuestImageError("e_phoff", 0x20, "beyond the file"), "ERR_VMM_GUEST_IMAGE"],
      [new api.BootSetupError("no room"), "ERR_VMM_BOOT_SETUP"],
      [new api.MachineConfigError("x"), "ERR_VMM_CONFIG"],
      [new api.InvalidArgumentError("x", "a"), "ERR_VMM_INVALID_ARGUMENT"],
      [new api.MachineClosedError(), "ERR_VMM_CLOSED"],
      [new api.MachineBusyError("x"), "ERR_VMM_BUSY"],
      [new api.RegisterValueError("x", "rip", 1), "ERR_VMM_REGISTER_VALUE"],
      [new api.BusConflictError("x", "io", 0, 1, "h"), "ERR_VMM_BUS_CONFLICT"],
      [new api.UnhandledAccessError("x", "io", 0, 1, false), "ERR_VMM_UNHANDLED_ACCESS"],
      [new api.BackendUnavailableError("x", "kvm"), "ERR_VMM_BACKEND_UNAVAILABLE"],
    ];
    for (const [e, code] of cases) {
      expect(e).toBeInstanceOf(api.VmmError);
      expect(e.code).toBe(code);
    }
    expect(new api.GuestImageError("f", 0, "p").field).toBe("f");
    expect(new api.InvalidArgumentError("x", "a")).toBeInstanceOf(api.MachineConfigError);
  });
});

describe("exports", () => {
  it("exports the loader option types' companions and not the internals", () => {
    const names = Object.keys(api);
    expect(names).toContain("KvmUnavailableError");
    for (const internal of [
      "setMemoryBytes",
      "bitSet",
      "nsToTicks",
      "qemuFlagLetters",
      "encodeE820",
      "FW_CFG_FILE_DIR",
      "Machine",
    ]) {
      expect(names, internal).not.toContain(internal);
    }
    expect(names.filter((n) => n.startsWith("FW_CFG_"))).toEqual([]);
  });
  it("a machine does not expose its exit loop, entry setup or a writable lastResult", async () => {
    const vm = await soft();
    expect("loop" in vm).toBe(false);
    expect("setupBlockingEntry" in vm).toBe(false);
    expect(() => {
      (vm as { lastResult: unknown }).lastResult = undefined;
    }).toThrow(TypeError);
  });
});

/** 64-bit guest that spins forever: jmp $ */
const SPIN = new Uint8Array([0xeb, 0xfe]);

describe("runs, signals, dispose and close", () => {
  it("an aborted signal stops the run as 'stopped'", async () => {
    const vm = await soft();
    vm.loadFlat(SPIN, { address: 0x1000, mode: "long" });
    const ac = new AbortController();
    const run = vm.run({ signal: ac.signal, timeoutMs: 60_000 });
    setTimeout(() => ac.abort(), 20);
    const r = await run;
    expect(r.reason).toBe("stopped");
    expect(vm.running).toBe(false);
    expect(vm.lastResult).toBe(r);
  });

  it("a signal aborted before the run ends it at once, sync runs too", async () => {
    const vm = await soft();
    vm.loadFlat(SPIN, { address: 0x1000, mode: "long" });
    const signal = AbortSignal.abort();
    expect(vm.runSync({ signal, timeoutMs: 60_000 }).reason).toBe("stopped");
    expect((await vm.run({ signal, timeoutMs: 60_000 })).reason).toBe("stopped");
    // the signal does not outlive its run: the next run without it runs to its limit
    expect((await vm.run({ maxExits: 0 })).reason).toBe("max-exits");
  });

  it("close() during a run ends it as 'stopped'", async () => {
    const vm = await soft();
    vm.loadFlat(SPIN, { address: 0x1000, mode: "long" });
    const run = vm.run({ timeoutMs: 60_000 });
    setTimeout(() => vm.close(), 20);
    const r = await run;
    expect(r.reason).toBe("stopped");
    expect(vm.closed).toBe(true);
  });

  it("after close(), registers, dump, memory and runs throw MachineClosedError", async () => {
    const vm = await soft();
    const cpu = vm.vcpu(0);
    vm.close();
    vm.close(); // twice is fine
    for (const call of [
      () => cpu.getRegs(),
      () => cpu.setRegs({ rax: 1n }),
      () => cpu.getSregs(),
      () => cpu.dump(),
      () => vm.memory.write(0, new Uint8Array(1)),
      () => vm.memory.read(0, 1),
      () => vm.runSync(),
      () => vm.loadFlat(SPIN),
    ]) {
      expect(call).toThrow(api.MachineClosedError);
    }
    await expect(vm.run()).rejects.toMatchObject({ code: "ERR_VMM_CLOSED" });
  });

  it("Symbol.dispose and Symbol.asyncDispose close the machine", async () => {
    const a = await soft();
    a[Symbol.dispose]();
    expect(a.closed).toBe(true);
    const b = await soft();
    await b[Symbol.asyncDispose]();
    expect(b.closed).toBe(true);
  });

  it("once() calls its listener at the first event only", async () => {
    const vm = await soft();
    vm.loadFlat(new Uint8Array([0xe6, 0x80, 0xe6, 0x80, 0xf4]), { address: 0x1000, mode: "long" }); // out 0x80,al x2; hlt
    const seen: string[] = [];
    vm.once("exit", (exit) => seen.push(exit.kind));
    let all = 0;
    vm.on("exit", () => all++);
    expect((await vm.run({ timeoutMs: 10_000 })).reason).toBe("hlt");
    expect(seen).toEqual(["io"]);
    expect(all).toBeGreaterThanOrEqual(3);
  });

  it("a second run while one is in progress is a MachineBusyError", async () => {
    const vm = await soft();
    vm.loadFlat(SPIN, { address: 0x1000, mode: "long" });
    const run = vm.run({ timeoutMs: 60_000 });
    await expect(vm.run()).rejects.toBeInstanceOf(api.MachineBusyError);
    vm.stop();
    expect((await run).reason).toBe("stopped");
  });
});
