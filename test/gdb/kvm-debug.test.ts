// The KVM side of the debugger without /dev/kvm: the kvm_guest_debug struct and DR7 encodings
// KVM_SET_GUEST_DEBUG receives (control flags, DR0-DR3, DR7 enables, R/W and LEN fields), and the
// stepping fallback for hosts whose debug registers and INT3 do not reach KVM (a binding that
// cannot open /dev/kvm makes the probe say so). The real-KVM part is test/kvm/gdb.test.ts.

import { describe, expect, it } from "vitest";
import { parseGdbAddress } from "../../lib/cli/parse.js";
import type { KvmBinding } from "../../lib/kvm/binding.js";
import {
  KVM_GUESTDBG_ENABLE,
  KVM_GUESTDBG_SINGLESTEP,
  KVM_GUESTDBG_USE_HW_BP,
  KVM_GUESTDBG_USE_SW_BP,
} from "../../lib/kvm/constants.js";
import { KVM_SET_GUEST_DEBUG } from "../../lib/kvm/ioctls.js";
import { LAYOUTS } from "../../lib/kvm/layouts.js";
import type { DebugExit } from "../../lib/types/exits.js";
import type { DebugHost, DebugStop, HardwarePoint } from "../../lib/vmm/debug.js";
import { dr7For, guestDebugStruct, KvmDebugDriver, probeGuestDebug } from "../../lib/vmm/debug-kvm.js";

describe("KVM_SET_GUEST_DEBUG encoding", () => {
  it("sets DR7 global enables, R/W and LEN per slot", () => {
    expect(dr7For([{ kind: "exec", length: 1 }])).toBe(0x2n);
    // slot 1: write, 4 bytes -> G1 (bit 3), RW1=01 (bits 21:20), LEN1=11 (bits 23:22)
    expect(
      dr7For([
        { kind: "exec", length: 1 },
        { kind: "write", length: 4 },
      ]),
    ).toBe(0x2n | 0x8n | (0b1101n << 20n));
    // slot 0: access, 8 bytes -> RW0=11, LEN0=10
    expect(dr7For([{ kind: "access", length: 8 }])).toBe(0x2n | (0b1011n << 16n));
  });

  it("writes control and debugreg[] as kvm_guest_debug lays them out", () => {
    const off = LAYOUTS.kvm_guest_debug.fields;
    const none = guestDebugStruct({ swBreakpoints: false, singleStep: false, points: [] });
    expect(none.getUint32(off.control, true)).toBe(0);
    const dv = guestDebugStruct({
      swBreakpoints: true,
      singleStep: true,
      points: [{ linear: 0x100017n, gpa: 0x100017, length: 1, kind: "exec" }],
    });
    expect(dv.byteLength).toBe(72);
    expect(dv.getUint32(off.control, true)).toBe(
      KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP,
    );
    expect(dv.getBigUint64(off["arch.debugreg"], true)).toBe(0x100017n);
    expect(dv.getBigUint64(off["arch.debugreg"] + 56, true)).toBe(0x2n);
  });
});

describe("--gdb addresses", () => {
  it("parses [HOST:]PORT and rejects anything else", () => {
    expect(parseGdbAddress("1234")).toEqual({ host: "127.0.0.1", port: 1234 });
    expect(parseGdbAddress("0.0.0.0:9000")).toEqual({ host: "0.0.0.0", port: 9000 });
    expect(parseGdbAddress("[::1]:1")).toEqual({ host: "::1", port: 1 });
    expect(() => parseGdbAddress("70000")).toThrow(/not \[HOST:\]PORT/);
    expect(() => parseGdbAddress("host:")).toThrow(/not \[HOST:\]PORT/);
  });
});

describe("KVM debugging where debug registers and INT3 do not reach KVM (stepping fallback)", () => {
  function rig(vcpus = 1) {
    const controls: number[] = [];
    /** the last control word each vCPU's fd was given */
    const byFd = new Map<number, number>();
    const binding = {
      kind: "fake-no-kvm",
      open() {
        throw Object.assign(new Error("no /dev/kvm"), { code: "ENOENT" });
      },
      ioctl(_fd: number, request: number, arg: DataView) {
        if (request === KVM_SET_GUEST_DEBUG) {
          controls.push(arg.getUint32(0, true));
          byFd.set(_fd, arg.getUint32(0, true));
        }
        return 0;
      },
    } as unknown as KvmBinding;
    const ram = new Uint8Array(0x2000);
    let handler: ((exit: DebugExit, ctx: { vcpuIndex: number }) => unknown) | undefined;
    const breakpoints = new Set<bigint>();
    let points: readonly HardwarePoint[] = [];
    const host = {
      vm: {
        vcpuCount: vcpus,
        vcpu: (i: number) => ({ backend: { kvmVcpu: { binding, fd: 7 + i } } }),
        setExitHandler: (_k: string, h: (exit: DebugExit, ctx: { vcpuIndex: number }) => unknown) => {
          handler = h;
          return undefined;
        },
        memory: { read: (gpa: number, n: number) => ram.slice(gpa, gpa + n) },
      },
      isSoftwareBreakpoint: (a: bigint) => breakpoints.has(a),
      isHardwareInt3: () => false,
      linearRip: () => 0n,
      hardware: () => points,
    } as unknown as DebugHost;
    const stops: DebugStop[] = [];
    const driver = new KvmDebugDriver(host, (s) => stops.push(s));
    const step = (pc: bigint, vcpuIndex = 0) =>
      handler!(
        { kind: "debug", exception: 1, pc, dr6: 0x4000n, dr7: 0n, raw: {} as DebugExit["raw"] },
        { vcpuIndex },
      );
    return {
      driver,
      controls,
      byFd,
      ram,
      breakpoints,
      stops,
      step,
      setPoints: (p: HardwarePoint[]) => (points = p),
    };
  }

  it("probes once and finds neither working without /dev/kvm", () => {
    const { controls } = rig();
    expect(controls).toEqual([]);
    expect(probeGuestDebug({ kind: "fake-no-kvm" } as unknown as KvmBinding)).toEqual({
      hardware: false,
      int3: false,
    });
  });

  it("steps while breakpoints are set and stops before our INT3", () => {
    const r = rig();
    r.breakpoints.add(0x1010n);
    r.driver.trapBreakpoints(true);
    expect(r.controls.at(-1)! & KVM_GUESTDBG_SINGLESTEP).toBe(KVM_GUESTDBG_SINGLESTEP);
    expect(r.step(0x1004n)).toBeUndefined(); // a step of ours: the guest runs on
    expect(r.stops).toEqual([]);
    expect(r.step(0x1010n)).toMatchObject({ reason: "debug" });
    expect(r.stops).toEqual([{ kind: "breakpoint", address: 0x1010n, hardware: false, vcpu: 0 }]);
    r.breakpoints.clear();
    r.driver.trapBreakpoints(false);
    expect(r.controls.at(-1)! & KVM_GUESTDBG_SINGLESTEP).toBe(0);
  });

  it("write watchpoints fire when the bytes change; execution points at their address; reads are refused", () => {
    const r = rig();
    const watch: HardwarePoint = { linear: 0x1800n, gpa: 0x1800, length: 4, kind: "write" };
    const exec: HardwarePoint = { linear: 0x1020n, gpa: 0x1020, length: 1, kind: "exec" };
    expect(r.driver.supports({ linear: 0x1800n, length: 4, kind: "access" }, [])).toBe(false);
    expect(r.driver.supports({ linear: 0x1800n, length: 4, kind: "write" }, [])).toBe(true);
    r.driver.setHardware([watch, exec]);
    // no DR0-DR3 handed to KVM: they would not fire
    expect(r.controls.at(-1)! & KVM_GUESTDBG_USE_HW_BP).toBe(0);
    expect(r.step(0x1004n)).toBeUndefined();
    r.ram[0x1801] = 7;
    r.step(0x1008n);
    expect(r.stops.pop()).toEqual({ kind: "watch", address: 0x1800n, watch: "write", vcpu: 0 });
    expect(r.step(0x100cn)).toBeUndefined(); // unchanged since: no stop
    r.step(0x1020n);
    expect(r.stops.pop()).toEqual({ kind: "breakpoint", address: 0x1020n, hardware: true, vcpu: 0 });
  });

  it("with two vCPUs: breakpoints and watchpoints refused here, a step is the selected vCPU's", () => {
    expect(rig().driver.breakpointsRefused).toBeUndefined();
    const r = rig(2);
    expect(r.driver.vcpus).toBe(2);
    // an AP started by INIT/SIPI would not stay stepped and would take our INT3 as its own #BP
    expect(r.driver.breakpointsRefused).toMatch(/several vCPUs need KVM to trap INT3/);
    expect(r.driver.supports({ linear: 0x1800n, length: 4, kind: "write" }, [])).toBe(false);
    expect(r.driver.supports({ linear: 0x1020n, length: 1, kind: "exec" }, [])).toBe(false);
    // gdb steps vCPU 1: only its fd single-steps, and the step is reported as vCPU 1's
    r.driver.setSingleStep(true, 1);
    expect(r.byFd.get(7)! & KVM_GUESTDBG_SINGLESTEP).toBe(0);
    expect(r.byFd.get(8)! & KVM_GUESTDBG_SINGLESTEP).toBe(KVM_GUESTDBG_SINGLESTEP);
    expect(r.step(0x1004n, 1)).toMatchObject({ reason: "debug" });
    expect(r.stops.pop()).toEqual({ kind: "step", vcpu: 1 });
    r.driver.setSingleStep(false);
    expect(r.byFd.get(8)! & KVM_GUESTDBG_SINGLESTEP).toBe(0);
  });
});
