// The host code of the example guests (examples/plugins/), in process on the soft backend: what the
// `nodevmm run --plugin` modules register and answer. test/cli/examples.test.ts runs them through
// the command.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import doublerPlugin, { DOUBLER_PORT, Doubler } from "../../examples/plugins/doubler.js";
import hypercallPlugin, {
  addHypercallChannel,
  answer,
  CHANNEL_NR,
} from "../../examples/plugins/hypercall.js";
import type { PluginContext } from "../../lib/cli/plugins.js";
import type { HypercallExit, RawExit } from "../../lib/index.js";
import { HYPERCALL_ENOSYS } from "../../lib/vmm/handlers.js";
import { createMachine, type Machine, machineExitLoop } from "../../lib/vmm/machine.js";
import { addPcDevices } from "../../lib/vmm/pc.js";
import { expected, IMAGES, manifest } from "./paths.js";

const machines: Machine[] = [];
afterEach(() => {
  for (const vm of machines.splice(0)) vm.close();
});
async function softMachine(): Promise<Machine> {
  const vm = await createMachine({ memoryMiB: 64, backend: "soft" });
  machines.push(vm);
  return vm;
}

function context(options: Record<string, string> = {}): PluginContext & { lines: string[] } {
  const lines: string[] = [];
  return { options, optionText: "", path: "/plugin.js", log: (l) => lines.push(l), lines };
}

const ALL_ONES = (1n << 64n) - 1n;

describe("examples/plugins/doubler", () => {
  it("answers operand * 2 + 1 at 0x500, or at the port= option", async () => {
    const vm = await softMachine();
    await doublerPlugin(vm, context());
    vm.io.write(DOUBLER_PORT, 4, 0x8000_0000);
    expect(vm.io.read(DOUBLER_PORT, 4)).toBe(1); // 2^32 + 1 mod 2^32
    const moved = await softMachine();
    await doublerPlugin(moved, context({ port: "0x600" }));
    moved.io.write(0x600, 4, 20);
    expect(moved.io.read(0x600, 4)).toBe(41);
    expect(moved.io.read(DOUBLER_PORT, 4)).toBe(0xffff_ffff); // nothing at 0x500 now
  });

  it("refuses unknown options and ports that are not numbers in range", async () => {
    const vm = await softMachine();
    expect(() => doublerPlugin(vm, context({ colour: "red" }))).toThrow(/unknown option "colour"/);
    for (const port of ["0x10000", "-1", "five", ""]) {
      expect(() => doublerPlugin(vm, context({ port }))).toThrow(/not an I\/O port/);
    }
    expect(vm.devices.some((d) => d instanceof Doubler)).toBe(false);
  });
});

describe("examples/plugins/hypercall", () => {
  it("runs the hypercall guest: three calls answered, the expected output", async () => {
    const m = manifest.find((x) => x.name === "hypercall")!;
    const vm = await softMachine();
    const serial: number[] = [];
    addPcDevices(vm, { serial: (b) => serial.push(...b) });
    const channel = addHypercallChannel(vm);
    vm.load(readFileSync(join(IMAGES, m.file)), { format: "flat", ...m.load! });
    const r = await vm.run({ timeoutMs: 20_000 });
    expect(r.reason).toBe("hlt");
    expect(Buffer.from(serial).toString()).toBe(expected(m));
    expect(channel.calls).toBe(3);
  });

  it("computes add and mul mod 2^64; unknown ops and blocks outside RAM get all-ones", async () => {
    const vm = await softMachine();
    const block = 0x3000;
    const ask = (op: bigint, a: bigint, b: bigint) => {
      vm.memory.writeU64(block, op);
      vm.memory.writeU64(block + 8, a);
      vm.memory.writeU64(block + 16, b);
      return answer(vm, block);
    };
    expect(ask(1n, ALL_ONES, 2n)).toBe(1n);
    expect(ask(2n, 1n << 63n, 2n)).toBe(0n);
    expect(ask(2n, 6n, 7n)).toBe(42n);
    expect(ask(3n, 1n, 1n)).toBe(ALL_ONES);
    expect(answer(vm, vm.memory.size - 8)).toBe(ALL_ONES);
  });

  it("leaves other hypercall numbers to the handler that was there (ENOSYS by default)", async () => {
    const vm = await softMachine();
    await hypercallPlugin(vm, context());
    const handler = machineExitLoop(vm).handlers.hypercall!;
    const exit = (nr: bigint, gpa: bigint): HypercallExit => ({
      kind: "hypercall",
      nr,
      args: [gpa, 1n, 0n, 0n, 0n],
      ret: 0n,
      raw: {} as RawExit,
    });
    const other = exit(CHANNEL_NR + 1n, 0x3000n);
    handler(other, { vcpu: vm.vcpu(0).backend, vcpuIndex: 0 });
    expect(other.ret).toBe(HYPERCALL_ENOSYS);
    const far = exit(CHANNEL_NR, 1n << 60n);
    handler(far, { vcpu: vm.vcpu(0).backend, vcpuIndex: 0 });
    expect(far.ret).toBe(ALL_ONES);
    expect(() => hypercallPlugin(vm, context({ verbose: "" }))).toThrow(/unknown option "verbose"/);
  });
});
