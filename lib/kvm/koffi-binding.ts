// The KVM binding without a compiler: koffi calling libc. Same interface and the same argument
// checks as the addon. Two things it cannot do as well: a kick cannot interrupt a KVM_RUN blocked
// in another thread (no signal handler without native code; the kick still ends the next run),
// and an ArrayBuffer from koffi cannot be detached, so munmap replaces the pages with an inert
// zero mapping at the same address (stale views read zeroes, never freed memory) and the address
// range is released when the ArrayBuffer is garbage-collected.

import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";
import type { IoctlArg, KvmBinding } from "./binding-api.js";
import { bytesOf, checkInt, checkIoctl } from "./ioctl-check.js";
import { KVM_GET_DIRTY_LOG, KVM_RUN, KVM_SET_USER_MEMORY_REGION } from "./ioctls.js";

type Koffi = typeof import("koffi");
// biome-ignore lint/suspicious/noExplicitAny: koffi's foreign functions are untyped
type Fn = (...args: any[]) => any;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EINTR = osConstants.errno.EINTR;
const EAGAIN = osConstants.errno.EAGAIN;
/** Node 20's largest ArrayBuffer, the addon's limit too */
const MAX_MAPPING = 2 ** 32;

function sysError(errno: number, syscall: string, request?: string, path?: string): Error {
  const [code, text] = getSystemErrorMap().get(-errno) ?? ["EUNKNOWN", "unknown error"];
  const e = new Error(`${syscall}${request ? ` ${request}` : ""} failed: ${text} (${code})`) as Error &
    Record<string, unknown>;
  e.code = code;
  e.errno = -errno;
  e.syscall = syscall;
  if (request) e.request = request;
  if (path !== undefined) e.path = path;
  return e;
}

interface Mapping {
  address: bigint;
  length: number;
  live: boolean;
  fd: number;
}

interface VcpuState {
  isVcpu: boolean;
  pending: boolean;
  run?: Uint8Array;
}

export function createKoffiBinding(): KvmBinding {
  const koffi = createRequire(import.meta.url)("koffi") as Koffi;
  const libc = koffi.load("libc.so.6");
  const cOpen: Fn = libc.func("int open(const char *path, int flags, int mode)");
  const cClose: Fn = libc.func("int close(int fd)");
  const ioctlPtr: Fn = libc.func("ioctl", "int", ["int", "unsigned long", "void *"]);
  const ioctlInt: Fn = libc.func("ioctl", "int", ["int", "unsigned long", "unsigned long"]);
  const mmapPtr: Fn = libc.func("mmap", "void *", ["void *", "size_t", "int", "int", "int", "int64_t"]);
  const mmapAt: Fn = libc.func("mmap", "uint64_t", ["uint64_t", "size_t", "int", "int", "int", "int64_t"]);
  const cMunmap: Fn = libc.func("munmap", "int", ["uint64_t", "size_t"]);
  const cEventfd: Fn = libc.func("int eventfd(unsigned int initval, int flags)");
  const MAP_FAILED = 0xffffffffffffffffn;

  const mappings = new WeakMap<ArrayBuffer, Mapping>();
  // Releases the address range of a mapping whose ArrayBuffer is gone (live or already replaced).
  const reaper = new FinalizationRegistry<Mapping>((m) => {
    cMunmap(m.address, m.length);
  });
  const vcpus = new Map<number, VcpuState>();
  const slots = new Map<string, number>();
  const vcpu = (fd: number): VcpuState => {
    let s = vcpus.get(fd);
    if (!s) {
      s = { isVcpu: false, pending: false };
      vcpus.set(fd, s);
    }
    return s;
  };

  const fdArg = (v: unknown, name = "fd") => checkInt(v, name, 0, 0x7fffffff);

  function wrap(ptr: unknown, length: number, fd: number): ArrayBuffer {
    const address = BigInt(koffi.address(ptr));
    const ab = koffi.view(ptr, length);
    const m: Mapping = { address, length, live: true, fd };
    mappings.set(ab, m);
    reaper.register(ab, m);
    return ab;
  }

  function mapFailed(ptr: unknown): boolean {
    return ptr === null || BigInt(koffi.address(ptr)) === MAP_FAILED;
  }

  return {
    kind: "koffi",
    crossThreadKick: false,
    open(path, flags) {
      if (typeof path !== "string") throw new TypeError("path must be a string");
      if (path.includes("\0")) throw new TypeError("path must not contain NUL");
      const f = flags === undefined ? O_RDWR : checkInt(flags, "flags", 0, 0x7fffffff);
      const fd = cOpen(path, f | O_CLOEXEC, 0) as number;
      if (fd < 0) throw sysError(koffi.errno(), "open", undefined, path);
      return fd;
    },
    close(fd) {
      fdArg(fd);
      vcpus.delete(fd);
      for (const k of slots.keys()) if (k.startsWith(`${fd}:`)) slots.delete(k);
      if (cClose(fd) < 0) throw sysError(koffi.errno(), "close");
    },
    ioctl(fd: number, request: number, arg?: IoctlArg) {
      fdArg(fd);
      const { name, arg: a } = checkIoctl(request, arg);
      const rc = (
        a.kind === "int" ? ioctlInt(fd, request, a.value) : ioctlPtr(fd, request, a.bytes)
      ) as number;
      if (rc < 0) throw sysError(koffi.errno(), "ioctl", name);
      return rc;
    },
    mmap(fd, length, offset) {
      fdArg(fd);
      checkInt(length, "length", 1, MAX_MAPPING);
      checkInt(offset, "offset", 0, Number.MAX_SAFE_INTEGER);
      if (offset % 4096 !== 0) throw new RangeError("offset must be a multiple of the page size");
      const p = mmapPtr(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
      if (mapFailed(p)) throw sysError(koffi.errno(), "mmap");
      const ab = wrap(p, length, fd);
      // a new kvm_run means a new vCPU behind this fd number: drop any earlier state of the number
      if (offset === 0 && length >= 4096)
        vcpus.set(fd, { isVcpu: false, pending: false, run: new Uint8Array(ab, 0, 4096) });
      return ab;
    },
    mmapAnonymous(length) {
      checkInt(length, "length", 1, MAX_MAPPING);
      const p = mmapPtr(
        null,
        length,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
        -1,
        0,
      );
      if (mapFailed(p)) throw sysError(koffi.errno(), "mmap");
      return wrap(p, length, -1);
    },
    munmap(buffer) {
      const m = buffer instanceof ArrayBuffer ? mappings.get(buffer) : undefined;
      if (!m) throw new TypeError("munmap needs an ArrayBuffer that mmap returned");
      if (!m.live) throw new TypeError("this mapping was already unmapped");
      const st = m.fd >= 0 ? vcpus.get(m.fd) : undefined;
      if (st?.run && st.run.buffer === buffer) st.run = undefined;
      // MAP_FIXED replaces the old pages atomically: the range never becomes unmapped while JS
      // still holds views of it.
      const r = BigInt(
        mmapAt(
          m.address,
          m.length,
          PROT_READ,
          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
          -1,
          0,
        ),
      );
      if (r === MAP_FAILED) throw sysError(koffi.errno(), "munmap");
      m.live = false;
    },
    eventfd(initval, flags) {
      const i = initval === undefined ? 0 : checkInt(initval, "initval", 0, 0xffffffff);
      const f = flags === undefined ? 0 : checkInt(flags, "flags", 0, 0x7fffffff);
      const fd = cEventfd(i, f | EFD_CLOEXEC) as number;
      if (fd < 0) throw sysError(koffi.errno(), "eventfd");
      return fd;
    },
    run(vcpuFd) {
      fdArg(vcpuFd, "vcpuFd");
      const st = vcpu(vcpuFd);
      st.isVcpu = true;
      if (st.pending && st.run) st.run[1] = 1;
      const rc = ioctlInt(vcpuFd, KVM_RUN, 0) as number;
      if (rc >= 0) return true;
      const err = koffi.errno();
      if (err === EINTR || err === EAGAIN) {
        st.pending = false;
        if (st.run) st.run[1] = 0;
        return false;
      }
      throw sysError(err, "ioctl", "KVM_RUN");
    },
    kick(vcpuFd) {
      fdArg(vcpuFd, "vcpuFd");
      const st = vcpu(vcpuFd);
      st.pending = true;
      if (st.isVcpu && st.run) st.run[1] = 1;
    },
    setUserMemoryRegion(vmFd, slot, flags, guestPhysAddr, memory) {
      fdArg(vmFd, "vmFd");
      checkInt(slot, "slot", 0, 0xffffffff);
      checkInt(flags, "flags", 0, 0xffffffff);
      const gpa = BigInt(checkInt(guestPhysAddr, "guestPhysAddr", 0, Number.MAX_SAFE_INTEGER));
      const s = new DataView(new ArrayBuffer(32));
      s.setUint32(0, slot, true);
      s.setUint32(4, flags, true);
      s.setBigUint64(8, gpa, true);
      let size = 0;
      if (memory !== null && memory !== undefined) {
        const m = memory instanceof ArrayBuffer ? mappings.get(memory) : undefined;
        if (!m?.live) {
          throw new TypeError(
            "guest memory must be an ArrayBuffer returned by mmap/mmapAnonymous (GC'd memory cannot back a slot)",
          );
        }
        size = m.length;
        s.setBigUint64(16, BigInt(m.length), true);
        s.setBigUint64(24, m.address, true);
      }
      if ((ioctlPtr(vmFd, KVM_SET_USER_MEMORY_REGION, s) as number) < 0) {
        throw sysError(koffi.errno(), "ioctl", "KVM_SET_USER_MEMORY_REGION");
      }
      if (size === 0) slots.delete(`${vmFd}:${slot}`);
      else slots.set(`${vmFd}:${slot}`, size);
    },
    getDirtyLog(vmFd, slot, bitmap) {
      fdArg(vmFd, "vmFd");
      checkInt(slot, "slot", 0, 0xffffffff);
      const out = bytesOf(bitmap);
      if (!out) throw new TypeError("bitmap must be an ArrayBuffer, TypedArray or DataView");
      const size = slots.get(`${vmFd}:${slot}`);
      if (size === undefined) throw new RangeError(`slot ${slot} was not set through this binding`);
      const need = Math.ceil(Math.ceil(size / 4096) / 64) * 8;
      if (out.length < need) throw new RangeError(`dirty bitmap needs ${need} bytes, got ${out.length}`);
      // KVM writes through a raw pointer: give it memory whose address we know, then copy out.
      const p = mmapPtr(null, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mapFailed(p)) throw sysError(koffi.errno(), "mmap");
      const address = BigInt(koffi.address(p));
      try {
        const s = new DataView(new ArrayBuffer(16));
        s.setUint32(0, slot, true);
        s.setBigUint64(8, address, true);
        if ((ioctlPtr(vmFd, KVM_GET_DIRTY_LOG, s) as number) < 0) {
          throw sysError(koffi.errno(), "ioctl", "KVM_GET_DIRTY_LOG");
        }
        out.set(new Uint8Array(koffi.view(p, need)));
      } finally {
        cMunmap(address, need);
      }
    },
  };
}
