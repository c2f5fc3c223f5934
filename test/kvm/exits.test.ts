// The kvm_run decoder on hand-filled kvm_run pages (runs everywhere): every exit kind, data as
// views into kvm_run (writes reach KVM), and shapes that type-check as lib/vmm's VmExit.

import { describe, expect, it } from "vitest";
import { KVM_EXIT, type KvmExit, KvmRunDecoder, LAYOUTS } from "../../lib/kvm/index.js";
import { kvmExitName } from "../../lib/types/exit-names.js";
import type { VmExit } from "../../lib/types/exits.js";

const F = LAYOUTS.kvm_run.fields;

function page(code: number, fill: (dv: DataView) => void = () => undefined) {
  const buf = new ArrayBuffer(4096);
  const dv = new DataView(buf);
  dv.setUint32(F.exit_reason, code, true);
  fill(dv);
  return { buf, dv, exit: new KvmRunDecoder(buf).decode() };
}

describe("KvmRunDecoder", () => {
  it("io: fields, and data is the kvm_run window at data_offset", () => {
    const { buf, exit } = page(KVM_EXIT.IO, (dv) => {
      dv.setUint8(F["io.direction"], 0);
      dv.setUint8(F["io.size"], 2);
      dv.setUint16(F["io.port"], 0x1f0, true);
      dv.setUint32(F["io.count"], 3, true);
      dv.setBigUint64(F["io.data_offset"], 0x800n, true);
    });
    expect(exit).toMatchObject({ kind: "io", direction: "in", size: 2, port: 0x1f0, count: 3 });
    if (exit.kind !== "io") throw new Error("unreachable");
    expect(exit.data.length).toBe(6);
    exit.data[0] = 0x77; // an IN answered through the view lands in kvm_run
    expect(new Uint8Array(buf)[0x800]).toBe(0x77);
    const vm: VmExit = exit; // structurally the vmm union
    expect(vm.raw).toEqual({ backend: "kvm", code: KVM_EXIT.IO });
  });

  it("mmio, debug, fail-entry, internal-error, system-event", () => {
    expect(
      page(KVM_EXIT.MMIO, (dv) => {
        dv.setBigUint64(F["mmio.phys_addr"], 0xfee00030n, true);
        dv.setUint32(F["mmio.len"], 4, true);
        dv.setUint8(F["mmio.is_write"], 1);
        dv.setUint32(F["mmio.data"], 0xdeadbeef, true);
      }).exit,
    ).toMatchObject({
      kind: "mmio",
      address: 0xfee00030,
      length: 4,
      write: true,
      data: new Uint8Array([0xef, 0xbe, 0xad, 0xde]),
    });
    expect(
      page(KVM_EXIT.DEBUG, (dv) => {
        dv.setUint32(F["debug.arch.exception"], 3, true);
        dv.setBigUint64(F["debug.arch.pc"], 0x401000n, true);
        dv.setBigUint64(F["debug.arch.dr6"], 0xffff0ff0n, true);
        dv.setBigUint64(F["debug.arch.dr7"], 0x400n, true);
      }).exit,
    ).toEqual({
      kind: "debug",
      exception: 3,
      pc: 0x401000n,
      dr6: 0xffff0ff0n,
      dr7: 0x400n,
      raw: { backend: "kvm", code: 4 },
    });
    expect(
      page(KVM_EXIT.FAIL_ENTRY, (dv) =>
        dv.setBigUint64(F["fail_entry.hardware_entry_failure_reason"], 0x80000021n, true),
      ).exit,
    ).toMatchObject({ kind: "fail-entry", reason: 0x80000021 });
    expect(
      page(KVM_EXIT.INTERNAL_ERROR, (dv) => {
        dv.setUint32(F["internal.suberror"], 1, true);
        dv.setUint32(F["internal.ndata"], 2, true);
        dv.setBigUint64(F["internal.data"], 5n, true);
        dv.setBigUint64(F["internal.data"] + 8, 6n, true);
      }).exit,
    ).toMatchObject({ kind: "internal-error", suberror: 1, data: [5n, 6n], message: "emulation failure" });
    expect(
      page(KVM_EXIT.SYSTEM_EVENT, (dv) => dv.setUint32(F["system_event.type"], 2, true)).exit,
    ).toMatchObject({
      kind: "system-event",
      type: 2,
    });
  });

  it("hypercall ret and msr value write through to kvm_run", () => {
    const h = page(KVM_EXIT.HYPERCALL, (dv) => {
      dv.setBigUint64(F["hypercall.nr"], 9n, true);
      dv.setBigUint64(F["hypercall.args"] + 8, 42n, true);
    });
    expect(h.exit).toMatchObject({ kind: "hypercall", nr: 9n });
    if (h.exit.kind !== "hypercall") throw new Error("unreachable");
    expect(h.exit.args[1]).toBe(42n);
    h.exit.ret = 7n;
    expect(h.dv.getBigUint64(F["hypercall.ret"], true)).toBe(7n);

    const m = page(KVM_EXIT.X86_RDMSR, (dv) => dv.setUint32(F["msr.index"], 0x1b, true));
    expect(m.exit).toMatchObject({ kind: "msr", write: false, index: 0x1b });
    if (m.exit.kind !== "msr") throw new Error("unreachable");
    m.exit.value = 0xfee00900n;
    expect(m.dv.getBigUint64(F["msr.data"], true)).toBe(0xfee00900n);
  });

  it("the kinds without payload, and unknown codes", () => {
    const kinds = (code: number) => page(code).exit.kind;
    expect(kinds(KVM_EXIT.HLT)).toBe("hlt");
    expect(kinds(KVM_EXIT.SHUTDOWN)).toBe("shutdown");
    expect(kinds(KVM_EXIT.INTR)).toBe("intr");
    expect(kinds(KVM_EXIT.IRQ_WINDOW_OPEN)).toBe("irq-window-open");
    const u: KvmExit = page(999).exit;
    expect(u).toEqual({ kind: "unknown", code: 999, raw: { backend: "kvm", code: 999 } });
    expect(new KvmRunDecoder(new ArrayBuffer(4096)).intr().kind).toBe("intr");
  });

  it("traces name every KVM_EXIT code lib/kvm knows as KVM spells it", () => {
    const names = Object.entries(KVM_EXIT).map(([name, code]) => [kvmExitName(code), name]);
    expect(names.filter(([traced, name]) => traced !== name)).toEqual([]);
    expect(names.length).toBeGreaterThan(10);
  });
});
