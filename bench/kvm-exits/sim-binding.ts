// A stand-in for the KVM system-call binding that answers every ioctl as a host with KVM would,
// and whose run() "enters" a guest that does one port write per entry (the OUT loop of run.ts)
// without any system call: what is left per exit is nodevmm's own Node-side cost (decode, loop,
// dispatch, handler, re-entry), measurable on hosts without /dev/kvm. Also the binding of the
// unit tests that check the decode and coalesced-ring paths without KVM.

import type { IoctlArg, KvmBinding } from "../../lib/kvm/binding-api.js";
import { KVM_API_VERSION, KVM_EXIT, KVM_EXIT_IO_OUT } from "../../lib/kvm/constants.js";
import {
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_VCPU_MMAP_SIZE,
} from "../../lib/kvm/ioctls.js";
import { LAYOUTS } from "../../lib/kvm/layouts.js";

const PAGE = 4096;
const F = LAYOUTS.kvm_run.fields;

/** One simulated entry: fills kvm_run (and may append to the coalesced ring); returns run()'s value. */
export type SimGuestStep = (run: DataView, vcpuMapping: Uint8Array) => boolean;

/** The guest of bench/kvm-exits: `l: inc al; out 0xe9, al; jmp l`, one OUT exit per entry. */
export function outLoopGuest(port = 0xe9): SimGuestStep {
  let al = 0;
  return (run, bytes) => {
    al = (al + 1) & 0xff;
    run.setUint32(F.exit_reason, KVM_EXIT.IO, true);
    run.setUint8(F["io.direction"], KVM_EXIT_IO_OUT);
    run.setUint8(F["io.size"], 1);
    run.setUint16(F["io.port"], port, true);
    run.setUint32(F["io.count"], 1, true);
    run.setUint32(F["io.data_offset"], PAGE, true);
    run.setUint32(F["io.data_offset"] + 4, 0, true);
    bytes[PAGE] = al;
    return true;
  };
}

export interface SimBindingOptions {
  /** what each KVM_RUN does (default: outLoopGuest()) */
  guest?: SimGuestStep;
  /** KVM_CHECK_EXTENSION answers by capability number (default 0: none) */
  extensions?: Record<number, number>;
  /** pages of the vCPU mapping (KVM_GET_VCPU_MMAP_SIZE); default 3 (kvm_run, PIO page, coalesced ring) */
  vcpuPages?: number;
  /**
   * A kick target through the built addon (whose kick() is harmless on an fd that is no vCPU), so
   * that a machine over this binding gets its watchdog, as with KVM; needs the addon built.
   */
  kickThrough?: string;
  /** every ioctl made, for tests: [request, arg] */
  log?: [number, IoctlArg | undefined][];
}

/** A KvmBinding without a kernel: see the file comment. */
export function simBinding(opts: SimBindingOptions = {}): KvmBinding & { runs: number } {
  const guest = opts.guest ?? outLoopGuest();
  const mmapSize = (opts.vcpuPages ?? 3) * PAGE;
  let nextFd = 100;
  const vcpus = new Map<number, { dv: DataView; bytes: Uint8Array }>();
  const b = {
    kind: "addon" as const,
    crossThreadKick: opts.kickThrough !== undefined,
    kickTarget: (vcpuFd: number) =>
      opts.kickThrough === undefined
        ? undefined
        : { binding: "addon" as const, addonPath: opts.kickThrough, vcpuFd },
    runs: 0,
    open: () => nextFd++,
    close: (fd: number) => void vcpus.delete(fd),
    ioctl(_fd: number, request: number, arg?: IoctlArg): number {
      opts.log?.push([request, arg]);
      switch (request) {
        case KVM_GET_API_VERSION:
          return KVM_API_VERSION;
        case KVM_GET_VCPU_MMAP_SIZE:
          return mmapSize;
        case KVM_CHECK_EXTENSION:
          return opts.extensions?.[Number(arg)] ?? 0;
        case KVM_CREATE_VM:
        case KVM_CREATE_VCPU:
          return nextFd++;
        default:
          return 0;
      }
    },
    mmap(fd: number, length: number): ArrayBuffer {
      const buf = new ArrayBuffer(length);
      vcpus.set(fd, { dv: new DataView(buf), bytes: new Uint8Array(buf) });
      return buf;
    },
    mmapAnonymous: (length: number) => new ArrayBuffer(length),
    munmap: () => undefined,
    eventfd: () => nextFd++,
    run(fd: number): boolean {
      const v = vcpus.get(fd);
      if (!v) throw Object.assign(new Error("ioctl KVM_RUN failed (EBADF)"), { code: "EBADF", errno: -9 });
      b.runs++;
      if (v.bytes[F.immediate_exit] !== 0) return false;
      return guest(v.dv, v.bytes);
    },
    kick: () => undefined,
    setUserMemoryRegion: () => undefined,
    getDirtyLog: () => undefined,
  };
  return b;
}
