// The KVM binding without a compiler: koffi calling libc. Same interface and the same argument
// checks as the addon. An ArrayBuffer from koffi cannot be detached (V8 refuses to transfer it), so
// munmap replaces the pages with inert private zero pages at the same address, readable and
// writable: a stale view reads zeroes and writes go nowhere, never into freed memory, the file or the
// guest; the address range is released when the ArrayBuffer is garbage-collected.
//
// As in the addon, only ranges known to be backed are mapped (a vCPU fd that came from
// KVM_CREATE_VCPU through this binding, up to KVM_GET_VCPU_MMAP_SIZE; a regular file, up to its
// size), and only a vCPU's kvm_run is written by kick(): a page with nothing behind it raises
// SIGBUS when touched.
//
// Kicks across threads work as in Firecracker/rust-vmm and the addon: the kicker sets
// kvm_run.immediate_exit, then signals the thread in KVM_RUN, whose (no-op) handler makes the
// ioctl return EINTR. koffi cannot install a C handler safely, so Node installs one (see
// KICK_SIGNAL); run() publishes its thread id and in-run flag in shared memory for the kicker.

import { fstatSync, readlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";
import { isMainThread } from "node:worker_threads";
import { type IoctlArg, KOFFI_KICK_WORDS, type KoffiKickTarget, type KvmBinding } from "./binding-api.js";
import { bytesOf, checkInt, checkIoctl } from "./ioctl-check.js";
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_DIRTY_LOG,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
} from "./ioctls.js";

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
const SIG_UNBLOCK = 1;
const { IN_RUN, PENDING, TID, COUNT } = KOFFI_KICK_WORDS;

/**
 * The kick signal. SIGURG because nothing in Node uses it (SIGUSR1 is the inspector, SIGPROF the
 * profiler, SIGUSR2 is what nodemon & co. send to restart, SIGINT/SIGTERM/SIGWINCH/SIGCHLD/SIGPIPE
 * have meaning to libuv and users), the kernel sends it only to owners of sockets with out-of-band
 * data (F_SETOWN, which Node never sets), and its default action is "ignore": should the handler
 * ever be gone, a kick is dropped instead of killing the process. Go's runtime picked it for
 * goroutine preemption signals for the same reasons. (The addon uses SIGRTMIN+3, which Node
 * cannot listen to.)
 */
export const KICK_SIGNAL = "SIGURG";
const kickSignalNumber = osConstants.signals[KICK_SIGNAL];

// Node's listener makes libuv install a process-wide handler; Node does not keep the process alive
// for it. Only the main thread's `process` can install one (workers get no signal events).
let kickListener: (() => void) | undefined;
function listenForKicks(): void {
  if (!isMainThread || kickListener) return;
  kickListener = () => {};
  process.on(KICK_SIGNAL, kickListener);
}

/** /dev/kvm: misc device 10, minor KVM_MINOR (232) */
const KVM_DEVICE = { major: 10, minor: 232 };

/** Whether `fd` is the KVM device (whatever path it was opened by). */
function isKvmDevice(fd: number): boolean {
  try {
    const st = fstatSync(fd);
    // Linux's dev_t: the major in bits 8-19 and 32 up, the minor in bits 0-7 and 20 up
    const rdev = BigInt(st.rdev);
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    return st.isCharacterDevice() && major === KVM_DEVICE.major && minor === KVM_DEVICE.minor;
  } catch {
    return false;
  }
}

/** Whether `fd` is a KVM vCPU (an anon inode named kvm-vcpu:N): only those get kicked. */
export function isVcpuFd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`).startsWith("anon_inode:kvm-vcpu");
  } catch {
    return false;
  }
}

/**
 * CommonJS source of `koffiKicker(target)` for a thread that kicks through a KoffiKickTarget (the
 * watchdog's worker): it maps the vCPU's kvm_run itself while it lives (close() unmaps), so that
 * immediate_exit can be set from there. Same order as the binding's own kick(): pending, then
 * immediate_exit, then the signal if the vCPU thread is in KVM_RUN.
 */
export const KOFFI_KICKER_SOURCE = `
function koffiKicker(t) {
  const koffi = require(t.addonPath);
  const link = (() => {
    try { return require("node:fs").readlinkSync("/proc/self/fd/" + t.vcpuFd); } catch { return "nothing"; }
  })();
  if (!link.startsWith("anon_inode:kvm-vcpu")) throw new Error("fd " + t.vcpuFd + " is not a KVM vCPU (" + link + ")");
  const libc = koffi.load("libc.so.6");
  const tgkill = libc.func("int tgkill(int tgid, int tid, int sig)");
  const mmap = libc.func("mmap", "void *", ["void *", "size_t", "int", "int", "int", "int64_t"]);
  const munmap = libc.func("munmap", "int", ["void *", "size_t"]);
  const p = mmap(null, 4096, ${PROT_READ | PROT_WRITE}, ${MAP_SHARED}, t.vcpuFd, 0);
  if (p === null || BigInt(koffi.address(p)) === 0xffffffffffffffffn) {
    throw new Error("cannot map the vCPU's kvm_run (errno " + koffi.errno() + ")");
  }
  const run = new Uint8Array(koffi.view(p, 4096));
  const sh = new Int32Array(t.shared);
  let open = true;
  return {
    kick() {
      if (!open) return;
      Atomics.store(sh, ${PENDING}, 1);
      run[1] = 1;
      if (Atomics.load(sh, ${IN_RUN}) !== 0) tgkill(process.pid, Atomics.load(sh, ${TID}), t.signal);
    },
    close() {
      if (open) munmap(p, 4096);
      open = false;
    },
  };
}
`;

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

/** a KVM fd this binding made: /dev/kvm from open(), VMs and vCPUs from ioctl() */
interface KvmFd {
  kind: "system" | "vm" | "vcpu";
  /** KVM_GET_VCPU_MMAP_SIZE of the /dev/kvm it came from; 0 if unknown */
  vcpuMmapSize: number;
}

interface Mapping {
  address: bigint;
  length: number;
  live: boolean;
  fd: number;
}

/**
 * Per vCPU fd. `shared` (KOFFI_KICK_WORDS) holds in_run, pending and the thread id; run() and a kick
 * keep the addon's order so that no kick is lost: a kick stores pending then reads in_run, run()
 * stores in_run then reads pending (Atomics are sequentially consistent), so at least one of them
 * sees the other; and the kicker sets immediate_exit before it signals, for a signal that lands
 * before the thread is in the ioctl.
 */
interface VcpuState {
  isVcpu: boolean;
  shared: Int32Array<SharedArrayBuffer>;
  run?: Uint8Array;
}

const newState = (run?: Uint8Array): VcpuState => ({
  isVcpu: false,
  shared: new Int32Array(new SharedArrayBuffer(COUNT * 4)),
  ...(run ? { run } : {}),
});

interface KickFns {
  gettid(): number;
  pthreadSigmask(how: number, set: Uint8Array, old: null): number;
}

/**
 * libc's thread calls, once a handler for KICK_SIGNAL is in place; undefined when there is none
 * (a worker that loaded koffi before the main thread did): then there is no cross-thread kick.
 */
function loadKickFns(libc: ReturnType<Koffi["load"]>): KickFns | undefined {
  try {
    listenForKicks();
    const sigaction: Fn = libc.func("sigaction", "int", ["int", "void *", "void *"]);
    // glibc's struct sigaction starts with the handler; SIG_DFL is 0 and SIG_IGN 1
    const old = new BigUint64Array(32);
    if ((sigaction(kickSignalNumber, null, old) as number) !== 0 || old[0]! <= 1n) return undefined;
    libc.func("int tgkill(int tgid, int tid, int sig)"); // what kicking threads call (throws if absent)
    return {
      gettid: libc.func("int gettid(void)") as Fn,
      pthreadSigmask: libc.func("int pthread_sigmask(int how, const void *set, void *old)") as Fn,
    };
  } catch (e) {
    if (process.env.NODEVMM_DEBUG) console.error(e);
    return undefined;
  }
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
  const kickFns = loadKickFns(libc);
  const koffiPath = createRequire(import.meta.url).resolve("koffi");
  // this binding's state belongs to the thread that created it: one thread id to publish
  let tid = 0;
  let threadReady = false;
  const prepareThread = (): void => {
    threadReady = true;
    if (!kickFns) return;
    tid = kickFns.gettid();
    // a thread that blocks the kick signal could not be kicked out of KVM_RUN
    const set = new Uint8Array(128);
    set[(kickSignalNumber - 1) >> 3]! |= 1 << ((kickSignalNumber - 1) & 7);
    kickFns.pthreadSigmask(SIG_UNBLOCK, set, null);
  };

  const mappings = new WeakMap<ArrayBuffer, Mapping>();
  // Releases the address range of a mapping whose ArrayBuffer is gone (live or already replaced).
  const reaper = new FinalizationRegistry<Mapping>((m) => {
    cMunmap(m.address, m.length);
  });
  const vcpus = new Map<number, VcpuState>();
  const slots = new Map<string, number>();
  const kvmFds = new Map<number, KvmFd>();
  let lastVcpuMmapSize = 0;
  const recordFd = (fd: number, rec: KvmFd | undefined) => {
    if (!rec) {
      kvmFds.delete(fd);
      return;
    }
    if (rec.vcpuMmapSize === 0) rec.vcpuMmapSize = lastVcpuMmapSize;
    else if (rec.kind === "system") lastVcpuMmapSize = rec.vcpuMmapSize;
    kvmFds.set(fd, rec);
  };
  const vcpu = (fd: number): VcpuState => {
    let s = vcpus.get(fd);
    if (!s) {
      s = newState();
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

  /**
   * Refuses a range the kernel has nothing behind (touching it would raise SIGBUS later); true
   * when fd is a vCPU of this binding's (its offset-0 page is kvm_run).
   */
  function checkMappable(fd: number, length: number, offset: number): boolean {
    const rec = kvmFds.get(fd);
    if (rec?.kind === "vcpu" && isVcpuFd(fd)) {
      const limit = rec.vcpuMmapSize || 4096;
      if (offset + length > limit) {
        throw new RangeError(
          `a vCPU fd maps at most ${limit} bytes (KVM_GET_VCPU_MMAP_SIZE), asked for ${length} at offset ${offset}`,
        );
      }
      return true;
    }
    let st: ReturnType<typeof fstatSync>;
    try {
      st = fstatSync(fd);
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).errno;
      throw typeof errno === "number" ? sysError(-errno, "fstat") : e;
    }
    if (!st.isFile()) {
      throw new TypeError(
        `fd ${fd} is neither a KVM vCPU this binding created nor a regular file: refusing to map it`,
      );
    }
    const backed = Math.ceil(st.size / 4096) * 4096;
    if (offset + length > backed) {
      throw new RangeError(
        `mapping ${length} bytes at offset ${offset} reaches past the end of the file (${st.size} bytes): those pages would raise SIGBUS`,
      );
    }
    return false;
  }

  function mapFailed(ptr: unknown): boolean {
    return ptr === null || BigInt(koffi.address(ptr)) === MAP_FAILED;
  }

  return {
    kind: "koffi",
    crossThreadKick: kickFns !== undefined,
    open(path, flags) {
      if (typeof path !== "string") throw new TypeError("path must be a string");
      if (path.includes("\0")) throw new TypeError("path must not contain NUL");
      const f = flags === undefined ? O_RDWR : checkInt(flags, "flags", 0, 0x7fffffff);
      const fd = cOpen(path, f | O_CLOEXEC, 0) as number;
      if (fd < 0) throw sysError(koffi.errno(), "open", undefined, path);
      if (isKvmDevice(fd)) {
        const size = ioctlInt(fd, KVM_GET_VCPU_MMAP_SIZE, 0) as number;
        recordFd(fd, { kind: "system", vcpuMmapSize: Math.max(size, 0) });
      } else {
        recordFd(fd, undefined);
      }
      return fd;
    },
    close(fd) {
      fdArg(fd);
      vcpus.delete(fd);
      recordFd(fd, undefined);
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
      if (request === KVM_CREATE_VM || request === KVM_CREATE_VCPU) {
        // only KVM answers ioctls of type 0xAE: the new fd is KVM's whatever `fd` was recorded as
        recordFd(rc, {
          kind: request === KVM_CREATE_VM ? "vm" : "vcpu",
          vcpuMmapSize: kvmFds.get(fd)?.vcpuMmapSize ?? 0,
        });
      }
      return rc;
    },
    mmap(fd, length, offset) {
      fdArg(fd);
      checkInt(length, "length", 1, MAX_MAPPING);
      checkInt(offset, "offset", 0, Number.MAX_SAFE_INTEGER);
      if (offset % 4096 !== 0) throw new RangeError("offset must be a multiple of the page size");
      const vcpu = checkMappable(fd, length, offset);
      const p = mmapPtr(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
      if (mapFailed(p)) throw sysError(koffi.errno(), "mmap");
      const ab = wrap(p, length, fd);
      // a new kvm_run means a new vCPU behind this fd number: drop any earlier state of the number
      if (vcpu && offset === 0) vcpus.set(fd, newState(new Uint8Array(ab, 0, Math.min(length, 4096))));
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
      // still holds views of it. Writable, so that a write through a stale view lands in the inert
      // pages instead of faulting (the addon detaches; koffi's buffers cannot be).
      const r = BigInt(
        mmapAt(
          m.address,
          m.length,
          PROT_READ | PROT_WRITE,
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
      recordFd(fd, undefined);
      return fd;
    },
    run(vcpuFd) {
      fdArg(vcpuFd, "vcpuFd");
      const st = vcpu(vcpuFd);
      st.isVcpu = true;
      if (!threadReady) prepareThread();
      const sh = st.shared;
      if (sh[TID] !== tid) Atomics.store(sh, TID, tid);
      Atomics.store(sh, IN_RUN, 1);
      if (Atomics.load(sh, PENDING) !== 0 && st.run) st.run[1] = 1;
      const rc = ioctlInt(vcpuFd, KVM_RUN, 0) as number;
      const err = rc < 0 ? koffi.errno() : 0;
      Atomics.store(sh, IN_RUN, 0);
      if (rc >= 0) return true;
      if (err === EINTR || err === EAGAIN) {
        Atomics.store(sh, PENDING, 0);
        if (st.run) st.run[1] = 0;
        return false;
      }
      throw sysError(err, "ioctl", "KVM_RUN");
    },
    kick(vcpuFd) {
      fdArg(vcpuFd, "vcpuFd");
      const st = vcpu(vcpuFd);
      // this binding's state is this thread's: no run of it can be in progress while it kicks, so
      // this only makes the next run return at once; other threads kick through kickTarget()
      Atomics.store(st.shared, PENDING, 1);
      if (st.isVcpu && st.run) st.run[1] = 1;
    },
    kickTarget(vcpuFd): KoffiKickTarget | undefined {
      fdArg(vcpuFd, "vcpuFd");
      if (!isVcpuFd(vcpuFd)) throw new TypeError(`fd ${vcpuFd} is not a KVM vCPU`);
      if (!kickFns) return undefined;
      return {
        binding: "koffi",
        addonPath: koffiPath,
        vcpuFd,
        shared: vcpu(vcpuFd).shared.buffer,
        signal: kickSignalNumber,
      };
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
