import { describe, expect, it } from "vitest";
import { GuestImageError } from "../../lib/boot/index.js";
import type { Device, DeviceContext } from "../../lib/devices/device.js";
import { DebugExit } from "../../lib/devices/index.js";
import type { IoExit, VmExit } from "../../lib/types/exits.js";
import { BusConflictError, MachineConfigError, UnhandledAccessError } from "../../lib/vmm/errors.js";
import { createMachine, type Machine } from "../../lib/vmm/machine.js";
import { FakeBackend, hlt, intr, io, type Step } from "./fake-backend.js";

async function machineWith(
  script: Step[],
  opts: ConstructorParameters<typeof FakeBackend>[1] = {},
  strict = false,
) {
  const backend = new FakeBackend(script, opts);
  const vm = await createMachine({ backend: () => backend, strict, memoryMiB: 1 });
  return { vm, backend, vcpu: () => backend.vcpus[0]! };
}

class Latch implements Device {
  readonly name: string;
  readonly ranges;
  readonly irq?: number;
  value = 0;
  ctx: DeviceContext | undefined;
  readonly log: string[] = [];
  constructor(name: string, base: number, length: number, irq?: number) {
    this.name = name;
    this.ranges = [{ space: "io" as const, base, length }];
    if (irq !== undefined) this.irq = irq;
  }
  attach(ctx: DeviceContext) {
    this.ctx = ctx;
  }
  read(offset: number, size: number) {
    this.log.push(`r${offset}/${size}`);
    return this.value + offset;
  }
  write(offset: number, size: number, value: number) {
    this.log.push(`w${offset}/${size}=${value}`);
    this.value = value;
  }
}

describe("Machine", () => {
  it("maps device ranges on the port bus: out then in round-trips through the device", async () => {
    let inExit: IoExit | undefined;
    const { vm } = await machineWith([
      io("out", 0x500, 2, [0x34, 0x12]),
      () => (inExit = io("in", 0x502, 2) as IoExit),
      hlt(),
    ]);
    const dev = vm.addDevice(new Latch("latch", 0x500, 4));
    const r = vm.runSync();
    expect(r.reason).toBe("hlt");
    expect(dev.log).toEqual(["w0/2=4660", "r2/2"]);
    expect([...inExit!.data]).toEqual([0x36, 0x12]);
  });

  it("rejects a device whose range overlaps another, leaving nothing half-mapped", async () => {
    const { vm } = await machineWith([]);
    vm.addDevice(new Latch("a", 0x3f8, 8));
    const b: Device = {
      name: "b",
      ranges: [
        { space: "io", base: 0x100, length: 4 },
        { space: "io", base: 0x3fc, length: 8 },
      ],
      read: () => 0,
      write: () => {},
    };
    expect(() => vm.addDevice(b)).toThrow(BusConflictError);
    // b's first range was released again
    expect(() => vm.addDevice(new Latch("c", 0x100, 4))).not.toThrow();
    expect(vm.devices.map((d) => d.name)).toEqual(["a", "c"]);
  });

  it("string I/O moves count elements through the bus in order", async () => {
    const outs: number[] = [];
    let counter = 0;
    let insExit: IoExit | undefined;
    const { vm } = await machineWith([
      io("out", 0xe9, 1, [0x68, 0x69, 0x21], 3),
      () => (insExit = io("in", 0x60, 2, [], 3) as IoExit),
      hlt(),
    ]);
    vm.io.onOut(0xe9, (_p, _s, v) => outs.push(v));
    vm.io.onIn(0x60, () => 0x100 + counter++);
    vm.runSync();
    expect(String.fromCharCode(...outs)).toBe("hi!");
    expect([...insExit!.data]).toEqual([0x00, 0x01, 0x01, 0x01, 0x02, 0x01]);
  });

  it("unregistered reads return all-ones; writes are counted and flagged in the exit event", async () => {
    let inExit: IoExit | undefined;
    const { vm } = await machineWith([
      () => (inExit = io("in", 0x1234, 4) as IoExit),
      io("out", 0x80, 1, [5]),
      hlt(),
    ]);
    const events: [string, boolean][] = [];
    const unhandled: number[] = [];
    vm.on("exit", (e, info) => events.push([e.kind, info.unhandled]));
    vm.on("unhandled", (a) => unhandled.push(a.address));
    const r = vm.runSync();
    expect(r.reason).toBe("hlt");
    expect([...inExit!.data]).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(events).toEqual([
      ["io", true],
      ["io", true],
      ["hlt", false],
    ]);
    expect(unhandled).toEqual([0x1234, 0x80]);
    expect(vm.io.unhandledWrites).toBe(1);
    expect(vm.stats.unhandled).toBe(2);
  });

  it("strict mode ends the run with an UnhandledAccessError", async () => {
    const { vm } = await machineWith([io("out", 0x80, 1, [5]), hlt()], {}, true);
    const r = vm.runSync();
    expect(r.reason).toBe("error");
    expect(r.error).toBeInstanceOf(UnhandledAccessError);
    expect(r.message).toMatch(/port 0x80/);
  });

  it("MMIO handlers see absolute addresses; wide accesses split into 8-byte pieces", async () => {
    const mm = (write: boolean, address: number, bytes: number[]): VmExit => ({
      kind: "mmio",
      address,
      length: bytes.length,
      write,
      data: Uint8Array.from(bytes),
      raw: { backend: "kvm", code: 6 },
    });
    const writes: [number, number, number][] = [];
    let readExit: VmExit | undefined;
    const { vm } = await machineWith([
      mm(true, 0xd0000004, [1, 0, 0, 0]),
      () => (readExit = mm(false, 0xd0000000, new Array(16).fill(0))),
      hlt(),
    ]);
    vm.mmio.onWrite(0xd0000000, 0x1000, (a, s, v) => writes.push([a, s, v]));
    vm.mmio.onRead(0xd0000000, 8, (a, s) => a - 0xd0000000 + s);
    vm.runSync();
    expect(writes).toEqual([[0xd0000004, 4, 1]]);
    const d = (readExit as { data: Uint8Array }).data;
    expect(d[0]).toBe(8); // offset 0, size 8
    expect([...d.subarray(8)].every((b) => b === 0xff)).toBe(true); // second half unclaimed
  });

  it("debug-exit from a device ends the run with the guest's code", async () => {
    const { vm } = await machineWith([io("out", 0xf4, 4, [0x10, 0, 0, 0]), intr(), intr()]);
    vm.addDevice(new DebugExit());
    const r = vm.runSync();
    expect(r).toMatchObject({ reason: "debug-exit", exitCode: 0x21, exits: 1 });
  });

  it("routes a device's IRQ line to the backend", async () => {
    const { vm, backend } = await machineWith([]);
    const dev = vm.addDevice(new Latch("irqdev", 0x300, 1, 5));
    dev.ctx!.irq!.set(true);
    dev.ctx!.irq!.pulse();
    expect(backend.irqEvents).toEqual([
      [5, true],
      [5, true],
      [5, false],
    ]);
  });

  it("requestStop(reset) and stop() end runs with their reasons", async () => {
    const { vm, vcpu } = await machineWith([], { tail: intr });
    const dev = vm.addDevice(new Latch("kbd", 0x64, 1));
    vm.setExitHandler("intr", () => dev.ctx!.requestStop({ reason: "reset" }));
    expect(vm.runSync().reason).toBe("reset");
    vm.setExitHandler("intr", () => vm.stop());
    expect(vm.runSync().reason).toBe("stopped");
    expect(vcpu().kicks).toBe(1);
  });

  it("HLT with interrupts enabled advances guest time to the next device deadline and resumes", async () => {
    const { vm, vcpu } = await machineWith([hlt(), hlt()]);
    const polls: number[] = [];
    vm.addDevice({
      name: "timer",
      ranges: [{ space: "io", base: 0x40, length: 4 }],
      read: () => 0,
      write: () => {},
      poll: (now) => {
        polls.push(now);
        return polls.length < 3 ? 1e9 : undefined; // one second, twice, then idle
      },
    });
    vcpu().regs.rflags = 0x202n;
    const t0 = vm.clock.nowNs();
    const r = vm.runSync({ maxExits: 10, timeoutMs: 30 });
    // the first two halts skip to the timer's deadlines; the third finds none left, so only the
    // host could wake the guest: the loop sleeps until the run's timeout
    expect(r.reason).toBe("timeout");
    expect(r.exits).toBe(3);
    expect(polls).toHaveLength(3);
    expect(vm.clock.nowNs() - t0).toBeGreaterThanOrEqual(2e9);
  });

  it("an idle async run wakes when the host raises a line, or stops", async () => {
    const { vm, backend, vcpu } = await machineWith([], {
      // halted until a line was raised, then the guest writes debug-exit
      tail: () => (backend.irqEvents.some(([, l]) => l) ? io("out", 0xf4, 1, [2]) : hlt()),
    });
    vm.addDevice(new DebugExit());
    vcpu().regs.rflags = 0x202n;
    setTimeout(() => vm.irqLine(4).set(true), 20);
    const r = await vm.run({ timeoutMs: 10_000 });
    expect(r).toMatchObject({ reason: "debug-exit", exitCode: 5 });
    // a few halts (one per look), not a spin through thousands of exits
    expect(r.exits).toBeLessThan(10);
    backend.irqEvents.length = 0;
    setTimeout(() => vm.stop(), 20);
    expect((await vm.run({ timeoutMs: 10_000 })).reason).toBe("stopped");
  });

  it("HLT with interrupts disabled is final", async () => {
    const { vm } = await machineWith([hlt(), intr()]);
    expect(vm.runSync().exits).toBe(1);
  });

  it("loadFlat puts the vCPU in the loader's entry state", async () => {
    const { vm, vcpu } = await machineWith([hlt()], { memoryBytes: 4 << 20 });
    const image = Uint8Array.from([0xf4]);
    vm.loadFlat(image);
    expect(vm.memory.readU8(0x7c00)).toBe(0xf4);
    expect(vcpu().regs.rip).toBe(0x7c00n);
    expect(vcpu().sregs.cs.selector).toBe(0);
    expect(vcpu().sregs.apicBase).toBe(0xfee00900n); // kept from before
    vm.loadFlat(Uint8Array.from([0x90, 0xf4]), { address: 0x100000, mode: "long" });
    expect(vcpu().regs.rip).toBe(0x100000n);
    expect(vcpu().sregs.cs.l).toBe(true);
    expect(vm.vcpu(0).dump()).toMatch(/Mode=long/);
  });

  it("load errors are typed and happen before anything runs", async () => {
    const { vm } = await machineWith([]);
    expect(() => vm.load(new Uint8Array(0), { format: "flat" })).toThrow(GuestImageError);
    expect(() => vm.loadFlat("nope" as unknown as Uint8Array)).toThrow(MachineConfigError);
  });

  it("exposes vCPU registers, a dump and a translation", async () => {
    const { vm, vcpu } = await machineWith([]);
    vcpu().regs.rax = 0x1234n;
    const v = vm.vcpu(0);
    expect(v.getRegs().rax).toBe(0x1234n);
    expect(v.dump()).toMatch(/^EAX=00001234 /);
    expect(v.translate(0x7c00).physical).toBe(0x7c00n);
    expect(() => vm.vcpu(1)).toThrow(/no vCPU 1/);
  });

  it("validates options", async () => {
    await expect(createMachine({ memoryMiB: 0, backend: () => new FakeBackend([]) })).rejects.toThrow(
      MachineConfigError,
    );
    // several vCPUs need the soft backend or vCPU threads, which this fake KVM backend cannot give
    await expect(createMachine({ vcpus: 2, backend: () => new FakeBackend([]) })).rejects.toThrow(
      /needs the soft backend/,
    );
    await expect(createMachine({ vcpus: 65, backend: "soft" })).rejects.toThrow(/at most 64/);
    await expect(createMachine({ backend: "bogus" as "kvm" })).rejects.toThrow(/backend must be/);
  });

  it("a second run while one is in progress is refused; close() closes the backend", async () => {
    const { vm, backend } = await machineWith([], { tail: intr });
    const running = vm.run({ maxExits: 100000 });
    expect(() => vm.runSync()).toThrow(/already running/);
    vm.stop();
    expect((await running).reason).toBe("stopped");
    vm.close();
    expect(backend.closed).toBe(true);
    expect(() => vm.runSync()).toThrow(/closed/);
  });

  it("a soft backend gets the i8259 pair as its interrupt controller on ports 0x20/0xa0", async () => {
    let given: unknown;
    const vm: Machine = await createMachine({
      memoryMiB: 1,
      backend: (o) => {
        given = o.interruptController;
        return new FakeBackend([], { kind: "soft" });
      },
    });
    expect(vm.pic).toBeDefined();
    expect(given).toBe(vm.pic);
    expect(vm.devices.map((d) => d.name)).toContain("i8259");
    expect(() => vm.io.onOut(0x20, () => {})).toThrow(BusConflictError);
  });

  it("a device whose poll() throws ends the run with reason error; stop() when idle does nothing", async () => {
    const { vm } = await machineWith([], { tail: intr });
    vm.stop();
    vm.addDevice({
      name: "broken-timer",
      ranges: [{ space: "io", base: 0x40, length: 4 }],
      read: () => 0,
      write: () => {},
      poll: () => {
        throw new Error("timer exploded");
      },
    });
    const r = vm.runSync({ maxExits: 10 });
    expect(r.reason).toBe("error");
    expect(r.message).toBe("Error: timer exploded");
    expect(r.exits).toBe(1);
  });
});
