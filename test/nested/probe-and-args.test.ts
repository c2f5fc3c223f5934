import { describe, expect, it } from "vitest";
import { KVM_API_VERSION, probeKvm } from "../../scripts/nested-kvm/kvm-probe.mjs";
import { qemuArgs } from "../../scripts/nested-kvm/qemu.mjs";

describe("probeKvm", () => {
  it("reports a missing device", async () => {
    const r = await probeKvm("/nonexistent/kvm");
    expect(r).toEqual({ usable: false, reason: "/nonexistent/kvm is missing" });
  });

  it("rejects a device that does not answer KVM_GET_API_VERSION with 12", async () => {
    const r = await probeKvm("/dev/null");
    expect(r.usable).toBe(false);
    expect(r.reason).toMatch(/KVM_GET_API_VERSION returned -1, expected 12/);
  });

  it("agrees with the KVM API version constant", () => {
    expect(KVM_API_VERSION).toBe(12);
  });
});

describe("qemuArgs", () => {
  const base = {
    vmlinuz: "/k/vmlinuz",
    initrd: "/k/initrd.img",
    shareDir: "/r/share",
    consoleLog: "/r/console.log",
  };

  it("emulates SVM with nested paging and keeps QEMU off the terminal", () => {
    const a = qemuArgs(base);
    expect(a[a.indexOf("-cpu") + 1]).toBe("qemu64,+svm,+npt");
    expect(a[a.indexOf("-accel") + 1]).toBe("tcg");
    expect(a[a.indexOf("-serial") + 1]).toBe("file:/r/console.log");
    expect(a[a.indexOf("-monitor") + 1]).toBe("none");
    expect(a).toContain("-nodefaults");
    expect(a).not.toContain("-nographic");
    expect(a.join(" ")).not.toMatch(/stdio/);
    expect(a).toContain("local,path=/r/share,mount_tag=host0,security_model=none,id=host0");
  });

  it("refuses paths QEMU's option parser would split", () => {
    expect(() => qemuArgs({ ...base, shareDir: "/r/a,b" })).toThrow(/may not contain a comma/);
  });
});
