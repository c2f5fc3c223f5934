// KVM_CREATE_VM fails with EINTR when a signal is pending while the kernel sets the VM up (a
// profiler's SIGPROF made `node --cpu-prof` fail to start any KVM machine): nothing was created,
// so Kvm.createVm() asks again, as QEMU's kvm_init does, and reports any other error at once.
import { describe, expect, it } from "vitest";
import type { KvmBinding } from "../../lib/kvm/binding-api.js";
import { KvmError } from "../../lib/kvm/errors.js";
import { KVM_CREATE_VM, KVM_GET_API_VERSION } from "../../lib/kvm/ioctls.js";
import { Kvm } from "../../lib/kvm/kvm.js";

function errno(code: string, n: number): Error {
  return Object.assign(new Error(`ioctl KVM_CREATE_VM failed: ${code}`), {
    code,
    errno: -n,
    syscall: "ioctl",
    request: "KVM_CREATE_VM",
  });
}

/** a binding whose KVM_CREATE_VM throws the given errors first, then makes VM fd 7 */
function fakeBinding(failures: Error[]): { binding: KvmBinding; createCalls: () => number } {
  let calls = 0;
  const unused = () => {
    throw new Error("not used by this test");
  };
  const binding: KvmBinding = {
    kind: "koffi",
    crossThreadKick: false,
    open: () => 3,
    close: () => {},
    ioctl: (_fd, request) => {
      if (request === KVM_GET_API_VERSION) return 12;
      if (request === KVM_CREATE_VM) {
        calls++;
        const e = failures.shift();
        if (e) throw e;
        return 7;
      }
      return 0;
    },
    mmap: unused,
    mmapAnonymous: unused,
    munmap: unused,
    eventfd: unused,
    run: unused,
    kick: () => {},
    setUserMemoryRegion: unused,
    getDirtyLog: unused,
  };
  return { binding, createCalls: () => calls };
}

describe("Kvm.createVm and EINTR", () => {
  it("asks again after EINTR and returns the VM the kernel then makes", () => {
    const f = fakeBinding([errno("EINTR", 4), errno("EINTR", 4)]);
    const kvm = Kvm.open({ binding: f.binding, path: "/dev/kvm" });
    const vm = kvm.createVm();
    expect(vm.fd).toBe(7);
    expect(f.createCalls()).toBe(3);
    kvm.close();
  });

  it("reports other errors at once, as a KvmError with the errno name", () => {
    const f = fakeBinding([errno("ENOMEM", 12)]);
    const kvm = Kvm.open({ binding: f.binding, path: "/dev/kvm" });
    let caught: unknown;
    try {
      kvm.createVm();
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(KvmError);
    expect((caught as KvmError).code).toBe("ENOMEM");
    expect(f.createCalls()).toBe(1);
    kvm.close();
  });

  it("gives up with the EINTR when signals keep coming", () => {
    const f = fakeBinding(Array.from({ length: 1000 }, () => errno("EINTR", 4)));
    const kvm = Kvm.open({ binding: f.binding, path: "/dev/kvm" });
    expect(() => kvm.createVm()).toThrow(KvmError);
    expect(f.createCalls()).toBe(100);
    kvm.close();
  });
});
