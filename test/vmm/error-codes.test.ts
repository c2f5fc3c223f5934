// Every error class of the public API (lib/index.ts and the nodevmm/kvm subpath) is a VmmError with a
// stable `code`, as Node's own errors carry one (issue 14, API). The classes users catch as RangeError
// stay RangeErrors; `instanceof VmmError` holds for them too, and only VmmError itself is widened so.

import { describe, expect, it } from "vitest";
import * as api from "../../lib/index.js";
import * as kvm from "../../lib/kvm/index.js";

const { VmmError } = api;

/** one instance of each class, made as the library makes them */
const instances: Record<string, Error> = {
  GuestImageError: new api.GuestImageError("e_ident", 0, "not an ELF"),
  BootSetupError: new api.BootSetupError("too little RAM"),
  DeviceConfigError: new api.DeviceConfigError("uart16550", "base", "bad"),
  FwCfgError: new api.FwCfgError("fw_cfg", "uuid", "bad"),
  VirtqueueError: new api.VirtqueueError("bad ring"),
  BackendUnavailableError: new api.BackendUnavailableError("no", "kvm"),
  BusConflictError: new api.BusConflictError("taken", "io", 0x3f8, 8, "uart"),
  InvalidArgumentError: new api.InvalidArgumentError("bad", "opts.memoryMiB"),
  MachineBusyError: new api.MachineBusyError("busy"),
  MachineClosedError: new api.MachineClosedError(),
  MachineConfigError: new api.MachineConfigError("bad"),
  RegisterValueError: new api.RegisterValueError("bad", "rip", "x"),
  UnhandledAccessError: new api.UnhandledAccessError("strict", "io", 0x99, 1, true),
  KvmUnavailableError: new kvm.KvmUnavailableError("missing", "/dev/kvm does not exist"),
  KvmError: new kvm.KvmError("ioctl failed", "ENXIO", 6, "ioctl", "KVM_IRQ_LINE"),
  KvmClosedError: new kvm.KvmClosedError("KvmVm"),
  KvmMemoryRegionError: new kvm.KvmMemoryRegionError("overlap"),
  KvmVcpuLimitError: new kvm.KvmVcpuLimitError(300, 255, "KVM_CAP_MAX_VCPUS"),
  GuestMemoryError: new api.GuestMemoryError("not RAM", 0xfee00000, 4),
};

/** exported error classes that are not VmmErrors yet, each with why (outside this change's files) */
const NOT_YET: Record<string, string> = {};

describe("error classes", () => {
  it("every exported error class is a VmmError with a stable code", () => {
    const exported = [...Object.entries(api), ...Object.entries(kvm)].filter(
      ([, v]) => typeof v === "function" && (v as { prototype: unknown }).prototype instanceof Error,
    );
    for (const [name] of exported) {
      // the two bases (VmmRangeError: of the errors that stay RangeErrors) have no instances of their own
      if (name === "VmmError" || name === "VmmRangeError" || name in NOT_YET) continue;
      expect(instances, `no instance of ${name} in this test`).toHaveProperty(name);
    }
    for (const [name, e] of Object.entries(instances)) {
      expect(e, name).toBeInstanceOf(VmmError);
      expect(e.name).toBe(name);
      const code = (e as unknown as { code: unknown }).code;
      // KvmError's code is the errno name, as Node's system errors have it
      expect(code, name).toMatch(name === "KvmError" ? /^E[A-Z0-9]+$/ : /^ERR_VMM_[A-Z_]+$/);
    }
  });

  it("codes tell the classes apart (a subclass that is the same kind of error may share its parent's)", () => {
    const byCode = new Map<string, string[]>();
    for (const [name, e] of Object.entries(instances)) {
      const code = (e as unknown as { code: string }).code;
      byCode.set(code, [...(byCode.get(code) ?? []), name]);
    }
    for (const [code, names] of byCode) {
      if (names.length > 1)
        expect([code, names]).toEqual(["ERR_VMM_DEVICE_CONFIG", ["DeviceConfigError", "FwCfgError"]]);
    }
    expect(instances.KvmUnavailableError).toMatchObject({
      code: "ERR_VMM_KVM_UNAVAILABLE",
      reason: "missing",
    });
    expect(instances.KvmClosedError).toMatchObject({ code: "ERR_VMM_KVM_CLOSED" });
    expect(instances.KvmError).toMatchObject({
      code: "ENXIO",
      errno: 6,
      syscall: "ioctl",
      request: "KVM_IRQ_LINE",
    });
  });

  it("the RangeErrors stay RangeErrors, and instanceof VmmError holds only through VmmError", () => {
    for (const name of ["DeviceConfigError", "FwCfgError", "KvmMemoryRegionError", "KvmVcpuLimitError"]) {
      expect(instances[name], name).toBeInstanceOf(RangeError);
    }
    for (const name of ["GuestImageError", "KvmError", "KvmUnavailableError", "MachineClosedError"]) {
      expect(instances[name], name).not.toBeInstanceOf(RangeError);
    }
    // a subclass's instanceof is the ordinary one
    expect(instances.DeviceConfigError).not.toBeInstanceOf(api.BusConflictError);
    expect(instances.BusConflictError).not.toBeInstanceOf(api.DeviceConfigError);
    expect(instances.InvalidArgumentError).toBeInstanceOf(api.MachineConfigError);
    expect(instances.FwCfgError).toBeInstanceOf(api.DeviceConfigError);
    // and nothing else is taken for a VmmError
    for (const e of [new Error("x"), new RangeError("x"), null, undefined, 5, {}, { code: "ERR_VMM" }]) {
      expect(e instanceof VmmError).toBe(false);
    }
  });

  it("thrown by the library: a device option", () => {
    let caught: unknown;
    try {
      new api.I8254({ base: -1 });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(VmmError);
    expect(caught).toMatchObject({ code: "ERR_VMM_DEVICE_CONFIG", device: "i8254", option: "base" });
  });
});
