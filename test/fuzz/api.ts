// Fuzz target "api": random calls to the public API (lib/index.ts) with arguments that are sometimes
// right, sometimes nearly right, and sometimes anything at all (null, undefined, NaN, strings where
// numbers go, objects of the wrong shape): createMachine, the loaders, vCPU registers and MSRs,
// run/runSync/stop/close, addDevice and device constructors, port and MMIO handlers, IRQ lines, exit
// handlers, events and guest memory, in sequences on one soft machine.
//
// Oracle: each call returns, or throws an error of a class nodevmm defines (VmmError and its kin,
// GuestImageError, DeviceConfigError, GuestMemoryError ...). An engine error (TypeError "Cannot read
// properties of null", SyntaxError from BigInt("x"), RangeError "Invalid array length") means an
// argument went unchecked; a crash or a hang of the process is caught by the runner.

import fc from "fast-check";
import * as api from "../../lib/index.js";
import { type CaseOutcome, errorLine, errorSignature, type FuzzTarget, OracleViolation } from "./target.js";

/** Errors the engine throws by itself: an argument nobody checked. */
const ENGINE_ERRORS = new Set<unknown>([
  Error.prototype,
  TypeError.prototype,
  RangeError.prototype,
  SyntaxError.prototype,
  ReferenceError.prototype,
  EvalError.prototype,
  URIError.prototype,
]);

/**
 * What the fuzz's own throwing handlers and listeners throw: when it reaches the caller of a host call
 * (vm.io.read with a listener of "unhandled" that throws, as EventEmitter's emit lets it), it is the
 * user's error coming back, not an engine error of ours.
 */
class UserCallbackError extends Error {}

export function isTypedError(e: unknown): boolean {
  return e instanceof Error && !ENGINE_ERRORS.has(Object.getPrototypeOf(e));
}

const weird = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    undefined,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    -1,
    -0,
    0.5,
    2 ** 53,
    2 ** 32,
    "",
    "x",
    "0x10",
    "1",
    true,
    [],
    {},
    1n,
    -1n,
    2n ** 64n,
  ),
  fc.anything({
    maxDepth: 2,
    withBigInt: true,
    withTypedArray: true,
    withNullPrototype: true,
    withSparseArray: true,
  }),
);
/** mostly a plausible value, sometimes a weird one */
const maybe = <T>(good: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 3, arbitrary: good as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: weird });

const small = fc.integer({ min: 0, max: 0x10000 });
const gpa = fc.oneof(
  fc.integer({ min: 0, max: 0x1fffff }),
  fc.constantFrom(0xfee00000, 0xd0000000, 0xffffffff, 0x100000000),
);
const code = fc.oneof(
  fc.constant(new Uint8Array([0xf4])),
  fc.uint8Array({ maxLength: 64 }),
  fc.constant(new Uint8Array([0xb0, 0x41, 0xe6, 0xe9, 0xeb, 0xfa])), // a spinning guest: out 0xe9 forever
);
const mode = fc.constantFrom("real", "protected", "long");
const regName = fc.constantFrom("rax", "rbx", "rcx", "rsp", "rip", "rflags", "r15");
const regValue = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt(), weird);
const segment = fc.record(
  {
    selector: maybe(small),
    base: maybe(fc.bigInt({ min: 0n, max: 0xffffffffn })),
    limit: maybe(fc.integer({ min: 0, max: 0xffffffff })),
    type: maybe(fc.nat(15)),
    present: maybe(fc.boolean()),
    dpl: maybe(fc.nat(3)),
    db: maybe(fc.boolean()),
    s: maybe(fc.boolean()),
    l: maybe(fc.boolean()),
    g: maybe(fc.boolean()),
  },
  { requiredKeys: [] },
);
const bounded = fc.record(
  {
    timeoutMs: fc.integer({ min: 0, max: 50 }),
    maxExits: maybe(fc.integer({ min: 0, max: 100 })),
    maxInstructions: maybe(fc.integer({ min: 0, max: 5000 })),
  },
  { requiredKeys: ["timeoutMs"] },
);
const deviceName = fc.constantFrom(
  "Uart16550",
  "DebugExit",
  "DebugConsole",
  "PostPort",
  "CmosRtc",
  "I8042",
  "I8254",
  "FwCfg",
  "AcpiPm",
  "I8259Pair",
  "IoApic",
  "LocalApic",
  "PcInterrupts",
  "ResetControl",
  "SystemControlPortA",
  "VirtioBlk",
  "VirtioRng",
  "VirtioConsole",
  "VirtioMmioDevice",
);
const portHandler = fc.oneof(
  fc.constant<unknown>(() => 0x12),
  fc.constant<unknown>(() => undefined),
  fc.constant<unknown>(() => {
    throw new UserCallbackError("handler fails");
  }),
  weird,
);

/** One call on the machine (or, for "create", the options of the machine). */
export type Step = { op: string; args: unknown[] };

const step = (op: string, ...args: fc.Arbitrary<unknown>[]): fc.Arbitrary<Step> =>
  fc.tuple(...args).map((a) => ({ op, args: a }));

const steps: fc.Arbitrary<Step> = fc.oneof(
  step(
    "loadFlat",
    maybe(code),
    maybe(
      fc.record(
        { address: maybe(gpa), mode: maybe(mode), entry: maybe(gpa), stack: maybe(gpa) },
        { requiredKeys: [] },
      ),
    ),
  ),
  step(
    "load",
    maybe(code),
    maybe(
      fc.record(
        {
          format: maybe(fc.constantFrom("auto", "flat", "elf", "multiboot", "linux")),
          mode: maybe(mode),
          cmdline: maybe(fc.string()),
        },
        { requiredKeys: [] },
      ),
    ),
  ),
  step("loadElf", maybe(code), weird),
  step(
    "loadMultiboot",
    maybe(code),
    maybe(fc.record({ cmdline: maybe(fc.string()), modules: weird }, { requiredKeys: [] })),
  ),
  step(
    "loadLinux",
    maybe(
      fc.record({ kernel: maybe(code), cmdline: maybe(fc.string()), initrd: weird }, { requiredKeys: [] }),
    ),
  ),
  step("vcpu", maybe(fc.constantFrom(0, 1))),
  step("setRegs", maybe(fc.dictionary(regName, regValue, { maxKeys: 3 }))),
  step("getRegs"),
  step(
    "setSregs",
    maybe(
      fc.record(
        {
          cs: maybe(segment),
          ds: maybe(segment),
          cr0: regValue,
          cr4: regValue,
          efer: regValue,
          gdt: weird,
          idt: weird,
        },
        { requiredKeys: [] },
      ),
    ),
  ),
  step("getSregs"),
  step("setMsr", maybe(fc.constantFrom(0x10, 0x1b, 0xc0000080, 0x277, 0xdeadbeef)), regValue),
  step("getMsr", maybe(fc.constantFrom(0x10, 0x1b, 0xc0000080, 0xdeadbeef))),
  step("translate", maybe(gpa)),
  step("dump", weird),
  step("disassemble", maybe(fc.integer({ min: -1, max: 40 }))),
  step("run", maybe(bounded)),
  step("runSync", bounded),
  step("stop"),
  step("close"),
  step("device", deviceName, weird),
  step("addDevice", weird),
  step("addPcDevices", weird),
  step("onIn", maybe(small), portHandler, maybe(fc.integer({ min: 0, max: 8 }))),
  step("onOut", maybe(small), portHandler, maybe(fc.integer({ min: 0, max: 8 }))),
  step("onRead", maybe(gpa), maybe(fc.integer({ min: 0, max: 0x2000 })), portHandler),
  step("onWrite", maybe(gpa), maybe(fc.integer({ min: 0, max: 0x2000 })), portHandler),
  step("ioRead", maybe(small), maybe(fc.constantFrom(1, 2, 4))),
  step("irqLine", maybe(fc.integer({ min: 0, max: 24 })), weird),
  step("setExitHandler", maybe(fc.constantFrom("io", "mmio", "hlt", "shutdown")), portHandler),
  step("on", maybe(fc.constantFrom("exit", "unhandled")), portHandler),
  step("memRead", maybe(gpa), maybe(fc.integer({ min: 0, max: 0x1000 }))),
  step("memWrite", maybe(gpa), maybe(fc.uint8Array({ maxLength: 64 }))),
  step("memView", maybe(gpa), maybe(fc.integer({ min: 0, max: 0x1000 }))),
  step("strict", weird),
);

export interface ApiCase {
  create: unknown;
  steps: Step[];
}

const createOptions = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record(
      {
        backend: fc.constant<unknown>("soft"),
        memoryMiB: maybe(fc.constantFrom(1, 2, 4)),
        vcpus: maybe(fc.constant(1)),
        strict: maybe(fc.boolean()),
        platformDevices: maybe(fc.boolean()),
        vcpuThread: maybe(fc.boolean()),
      },
      { requiredKeys: ["backend"] },
    ) as fc.Arbitrary<unknown>,
  },
  {
    weight: 1,
    arbitrary: fc.oneof(weird, fc.record({ backend: weird, memoryMiB: weird }, { requiredKeys: [] })),
  },
);

const apiCase: fc.Arbitrary<ApiCase> = fc.record({
  create: createOptions,
  steps: fc.array(steps, { maxLength: 12 }),
});

type AnyFn = (...a: unknown[]) => unknown;

async function callStep(vm: api.Machine, s: Step): Promise<void> {
  const a = s.args;
  const cpu = () => vm.vcpu(0) as unknown as Record<string, AnyFn>;
  const m = vm as unknown as Record<string, AnyFn>;
  switch (s.op) {
    case "vcpu":
      m.vcpu!(a[0]);
      return;
    case "setRegs":
    case "getRegs":
    case "setSregs":
    case "getSregs":
    case "setMsr":
    case "getMsr":
    case "translate":
    case "dump":
    case "disassemble":
      cpu()[s.op]!(...a);
      return;
    case "run": {
      // a run always ends: stop() after 100 ms even when the limits are not limits
      const timer = setTimeout(() => vm.stop(), 100);
      try {
        await m.run!(a[0]);
      } finally {
        clearTimeout(timer);
      }
      return;
    }
    case "device": {
      const Ctor = (api as unknown as Record<string, new (o: unknown) => api.Device>)[a[0] as string]!;
      vm.addDevice(new Ctor(a[1]));
      return;
    }
    case "addPcDevices":
      api.addPcDevices(vm, a[0] as api.PcDeviceOptions);
      return;
    case "onIn":
    case "onOut":
      (vm.io as unknown as Record<string, AnyFn>)[s.op]!(...a);
      return;
    case "onRead":
    case "onWrite":
      (vm.mmio as unknown as Record<string, AnyFn>)[s.op]!(...a);
      return;
    case "ioRead":
      (vm.io as unknown as Record<string, AnyFn>).read!(...a);
      return;
    case "irqLine": {
      const line = vm.irqLine(a[0] as number) as unknown as Record<string, AnyFn>;
      line.set!(a[1]);
      return;
    }
    case "memRead":
      vm.memory.read(a[0] as number, a[1] as number);
      return;
    case "memWrite":
      vm.memory.write(a[0] as number, a[1] as Uint8Array);
      return;
    case "memView":
      vm.memory.view(a[0] as number, a[1] as number);
      return;
    case "strict":
      (vm as unknown as { strict: unknown }).strict = a[0];
      return;
    default:
      await m[s.op]!(...a);
  }
}

function violation(what: string, e: unknown): OracleViolation {
  // the class and the call, not the line: a known bug stays known while its file is edited
  const name = e instanceof Error ? e.name : `non-Error ${typeof e}`;
  return new OracleViolation(
    `api ${what} threw ${name}`,
    `${what} threw ${errorLine(e)} (${errorSignature(e)})`,
    e,
  );
}

export async function runApiCase(c: ApiCase): Promise<CaseOutcome> {
  let vm: api.Machine;
  try {
    vm = await api.createMachine(c.create as api.MachineOptions);
  } catch (e) {
    if (isTypedError(e)) return { outcome: `createMachine: ${(e as Error).name}`, bytes: 0 };
    throw violation("createMachine", e);
  }
  let typed = 0;
  let failure: OracleViolation | undefined;
  for (const s of c.steps) {
    try {
      await callStep(vm, s);
    } catch (e) {
      if (!isTypedError(e)) {
        failure = violation(s.op, e);
        break;
      }
      typed++;
    }
  }
  try {
    vm.close();
  } catch (e) {
    // close() of a closed machine or after odd calls must not throw an engine error either
    if (!isTypedError(e)) failure ??= violation("close", e);
  }
  if (failure) throw failure;
  return { outcome: typed ? "typed errors" : "all calls returned", bytes: 0 };
}

/** A case as text: the steps with arguments rendered by fast-check (functions by their source). */
function describeApi(c: ApiCase): string {
  return fc.stringify(c);
}

export const apiTarget: FuzzTarget<ApiCase> = {
  name: "api",
  about: "random arguments to the public API on a soft machine: results or typed errors",
  arbitrary: apiCase,
  run: runApiCase,
  describe: describeApi,
};
