// One contract, both bindings (the addon and koffi over libc): same results, same typed errors,
// no crash whatever is passed. Most of it needs no /dev/kvm.

import { mkdtempSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  availableBindings,
  type BindingKind,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_SUPPORTED_CPUID,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  Kvm,
  loadBinding,
  probeKvm,
} from "../../lib/kvm/index.js";
import { startKickWorker } from "./kick-worker.js";

const available = availableBindings();
const kvmUsable = probeKvm().usable;
const dir = mkdtempSync(join(tmpdir(), "nodevmm-binding-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function thrown(f: () => unknown): Error & Record<string, unknown> {
  try {
    f();
  } catch (e) {
    return e as Error & Record<string, unknown>;
  }
  throw new Error("expected a throw");
}

describe.each(["addon", "koffi"] as BindingKind[])("binding %s", (kind) => {
  const reason = available.includes(kind) ? "" : ` (skipped: the ${kind} binding is not available here)`;
  describe.skipIf(!available.includes(kind))(`contract${reason}`, () => {
    const b = available.includes(kind) ? loadBinding(kind) : (undefined as never);

    it("reports its kind", () => {
      expect(b.kind).toBe(kind);
    });

    it("open: system errors carry code, negative errno and syscall", () => {
      const e = thrown(() => b.open("/nonexistent/nodevmm"));
      expect(e).toMatchObject({ code: "ENOENT", errno: -2, syscall: "open" });
      expect(e.message).toMatch(/ENOENT/);
    });

    it("wrong argument types are TypeErrors, out-of-range values RangeErrors", () => {
      expect(() => b.open(42 as unknown as string)).toThrow(TypeError);
      expect(() => b.close("3" as unknown as number)).toThrow(TypeError);
      expect(() => b.close(-1)).toThrow(RangeError);
      expect(() => b.close(Number.NaN)).toThrow(TypeError);
      expect(() => b.close(Number.POSITIVE_INFINITY)).toThrow(TypeError);
      expect(() => b.mmapAnonymous(2 ** 64)).toThrow(RangeError);
      expect(() => b.ioctl(0, "KVM_RUN" as unknown as number)).toThrow(TypeError);
      expect(() => b.ioctl(0, 0x1234)).toThrow(RangeError); // not a KVM request
      expect(() => b.ioctl(0, KVM_SET_USER_MEMORY_REGION, new Uint8Array(32))).toThrow(TypeError); // raw pointer inside
      expect(() => b.ioctl(0, KVM_GET_SUPPORTED_CPUID, 5)).toThrow(TypeError); // needs a buffer
      expect(() => b.ioctl(0, KVM_GET_SUPPORTED_CPUID, new Uint8Array(4))).toThrow(RangeError); // too small
      const claim = new Uint32Array(4);
      claim[0] = 1000; // nent = 1000 entries, in a 16-byte buffer
      expect(() => b.ioctl(0, KVM_GET_SUPPORTED_CPUID, claim)).toThrow(/header asks for/);
      expect(() => b.ioctl(0, KVM_CREATE_VM, {} as unknown as number)).toThrow(TypeError);
      expect(() => b.mmapAnonymous(0)).toThrow(RangeError);
      expect(() => b.mmapAnonymous(1.5)).toThrow(TypeError);
      expect(() => b.mmap(0, 4096, 100)).toThrow(RangeError);
      expect(() => b.munmap(new ArrayBuffer(8))).toThrow(TypeError);
      expect(() => b.munmap(null as unknown as ArrayBuffer)).toThrow(TypeError);
      expect(() => b.setUserMemoryRegion(0, 0, 0, 0, new ArrayBuffer(4096))).toThrow(TypeError);
      expect(() => b.getDirtyLog(0, 77, new Uint8Array(8))).toThrow(RangeError);
      expect(() => b.run(-5)).toThrow(RangeError);
      expect(() => b.ioctl(0, KVM_GET_SUPPORTED_CPUID, new Uint8Array(new SharedArrayBuffer(64)))).toThrow(
        TypeError,
      );
      expect(() => b.mmapAnonymous(2 ** 40)).toThrow(RangeError); // beyond the largest ArrayBuffer
      const gone = b.mmapAnonymous(4096);
      b.munmap(gone);
      expect(() => b.setUserMemoryRegion(0, 0, 0, 0, gone)).toThrow(TypeError);
    });

    it("eventfd: a counter the kernel keeps", () => {
      const fd = b.eventfd(3, 0);
      try {
        const one = Buffer.alloc(8);
        one.writeBigUInt64LE(4n);
        writeSync(fd, one);
        const out = Buffer.alloc(8);
        readSync(fd, out);
        expect(out.readBigUInt64LE()).toBe(7n);
      } finally {
        b.close(fd);
      }
    });

    it("ioctl on a non-KVM fd fails with the request's name; run too", () => {
      const fd = b.eventfd(0, 0);
      try {
        expect(thrown(() => b.ioctl(fd, KVM_GET_API_VERSION))).toMatchObject({
          code: "ENOTTY",
          syscall: "ioctl",
          request: "KVM_GET_API_VERSION",
        });
        expect(thrown(() => b.run(fd))).toMatchObject({ code: "ENOTTY", request: "KVM_RUN" });
        b.kick(fd); // harmless on anything
      } finally {
        b.close(fd);
      }
      expect(KVM_RUN).toBe(0xae80);
    });

    it("anonymous memory: zeroed, writable; after munmap no view reaches the old pages", () => {
      const ab = b.mmapAnonymous(8192);
      const view = new Uint8Array(ab);
      expect(view.length).toBe(8192);
      expect(view.every((x) => x === 0)).toBe(true);
      view.fill(0xaa);
      b.munmap(ab);
      // addon: detached (length 0); koffi: the range now holds inert zero pages
      expect(view.length === 0 || view.every((x) => x === 0)).toBe(true);
      expect(() => b.munmap(ab)).toThrow(TypeError);
    });

    it("mmap of a file is shared with the file", () => {
      const path = join(dir, `${kind}.bin`);
      writeFileSync(path, Buffer.alloc(4096));
      const fd = b.open(path);
      try {
        const ab = b.mmap(fd, 4096, 0);
        new Uint8Array(ab).set([1, 2, 3], 100);
        b.munmap(ab);
      } finally {
        b.close(fd);
      }
      expect([...readFileSync(path).subarray(100, 103)]).toEqual([1, 2, 3]);
    });

    it("kickTarget refuses an fd that is not a KVM vCPU", () => {
      const fd = b.eventfd(0, 0);
      try {
        expect(() => b.kickTarget?.(fd)).toThrow(/not a KVM vCPU/);
      } finally {
        b.close(fd);
      }
    });

    it.skipIf(!kvmUsable)("on /dev/kvm: another thread kicks a spinning guest out of KVM_RUN", async () => {
      expect(b.crossThreadKick).toBe(true);
      const kvm = Kvm.open({ binding: b });
      try {
        const vm = kvm.createVm();
        vm.setTssAddress(0xfffbd000);
        vm.allocateMemory(0, 0x10000).bytes.set([0xeb, 0xfe], 0); // jmp $ at the reset vector's alias
        const vcpu = vm.createVcpu(0);
        const s = vcpu.getSregs();
        vcpu.setSregs({ ...s, cs: { ...s.cs, base: 0n, selector: 0 } });
        vcpu.setRegs({ ...vcpu.getRegs(), rip: 0n, rflags: 2n });
        const target = b.kickTarget?.(vcpu.fd);
        expect(target).toMatchObject({ binding: kind, vcpuFd: vcpu.fd });
        const w = await startKickWorker(target!);
        try {
          w.kickAfter(30); // while this thread is blocked in KVM_RUN
          expect(b.run(vcpu.fd)).toBe(false);
          await w.kickNow(); // between runs: the next one returns at once
          expect(b.run(vcpu.fd)).toBe(false);
        } finally {
          await w.close();
        }
        expect(vcpu.getRegs().rip).toBe(0n);
      } finally {
        kvm.close();
      }
    });

    it.skipIf(!kvmUsable)("on /dev/kvm: API version and supported CPUID", () => {
      const fd = b.open("/dev/kvm");
      try {
        expect(b.ioctl(fd, KVM_GET_API_VERSION)).toBe(12);
        const buf = new Uint8Array(8 + 256 * 40);
        new DataView(buf.buffer).setUint32(0, 256, true);
        b.ioctl(fd, KVM_GET_SUPPORTED_CPUID, buf);
        const n = new DataView(buf.buffer).getUint32(0, true);
        expect(n).toBeGreaterThan(0);
        expect(n).toBeLessThanOrEqual(256);
      } finally {
        b.close(fd);
      }
    });
  });
});

describe("binding selection", () => {
  it("NODEVMM_BINDING picks one and rejects nonsense", () => {
    const old = process.env.NODEVMM_BINDING;
    try {
      process.env.NODEVMM_BINDING = "bogus";
      expect(() => loadBinding()).toThrow(/NODEVMM_BINDING/);
      if (available.includes("koffi")) {
        process.env.NODEVMM_BINDING = "koffi";
        expect(loadBinding().kind).toBe("koffi");
      }
      delete process.env.NODEVMM_BINDING;
      expect(loadBinding().kind).toBe(available[0]);
    } finally {
      if (old === undefined) delete process.env.NODEVMM_BINDING;
      else process.env.NODEVMM_BINDING = old;
    }
  });
});
