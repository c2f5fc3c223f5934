// Why KVM cannot be used, as typed errors (no /dev/kvm needed: the binding is a stand-in that
// answers as a host without access or with another API version would).

import { describe, expect, it } from "vitest";
import { Kvm, type KvmBinding, KvmUnavailableError, probeKvm } from "../../lib/kvm/index.js";

function sysError(code: string, errno: number): Error {
  return Object.assign(new Error(`open failed: (${code})`), { code, errno: -errno, syscall: "open" });
}

function fakeBinding(open: () => number, apiVersion = 12): KvmBinding {
  const unused = () => {
    throw new Error("not used by this test");
  };
  return {
    kind: "koffi",
    crossThreadKick: false,
    open,
    close: () => undefined,
    ioctl: () => apiVersion,
    mmap: unused,
    mmapAnonymous: unused,
    munmap: unused,
    eventfd: unused,
    run: unused,
    kick: unused,
    setUserMemoryRegion: unused,
    getDirtyLog: unused,
  };
}

function reasonOf(f: () => unknown): KvmUnavailableError {
  try {
    f();
  } catch (e) {
    if (e instanceof KvmUnavailableError) return e;
    throw e;
  }
  throw new Error("expected KvmUnavailableError");
}

describe("KvmUnavailableError", () => {
  it("missing: the device does not exist", () => {
    const e = reasonOf(() => Kvm.open({ path: "/nonexistent/kvm" }));
    expect(e.reason).toBe("missing");
    expect(e.message).toMatch(/\/nonexistent\/kvm/);
  });

  it("permission: with the kvm-group hint", () => {
    const e = reasonOf(() =>
      Kvm.open({
        binding: fakeBinding(() => {
          throw sysError("EACCES", 13);
        }),
      }),
    );
    expect(e.reason).toBe("permission");
    expect(e.hint).toMatch(/kvm group/);
  });

  it("api-version: anything but 12 is refused", () => {
    const e = reasonOf(() => Kvm.open({ binding: fakeBinding(() => 3, 11) }));
    expect(e).toMatchObject({ reason: "api-version", apiVersion: 11 });
  });

  it("probeKvm never throws and says why", () => {
    const p = probeKvm({ path: "/nonexistent/kvm" });
    expect(p.usable).toBe(false);
    expect(p.reason).toMatch(/^missing:/);
  });
});
