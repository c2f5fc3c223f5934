// kvm_run decoded into the shared VM-exit union (lib/types/exits.ts). Exit data are views into
// kvm_run, never copies: for io "in" and mmio reads, writing exit.data answers the guest on the next run.

import type {
  CpuidExit,
  DebugExit,
  FailEntryExit,
  HltExit,
  HypercallExit,
  InternalErrorExit,
  IntrExit,
  IoExit,
  IrqWindowOpenExit,
  MmioExit,
  MsrExit,
  RawExit,
  ShutdownExit,
  SystemEventExit,
  UnknownExit,
  VmExit,
} from "../types/exits.js";
import { KVM_EXIT, KVM_EXIT_IO_OUT } from "./constants.js";
import { LAYOUTS } from "./layouts.js";

/** The raw part of a KVM exit: kvm_run.exit_reason (a KVM_EXIT_* code). */
export type KvmRawExit = Extract<RawExit, { backend: "kvm" }>;

/** The exits of the shared union, with raw narrowed to KVM's. */
/** A VmExit as KVM reports it: the same shape, with KVM's raw exit code. */
export type FromKvm<E extends VmExit> = Omit<E, "raw"> & { raw: KvmRawExit };
/** `IoExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmIoExit = FromKvm<IoExit>;
/** `MmioExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmMmioExit = FromKvm<MmioExit>;
/** `HltExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmHltExit = FromKvm<HltExit>;
/** `ShutdownExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmShutdownExit = FromKvm<ShutdownExit>;
/** `FailEntryExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmFailEntryExit = FromKvm<FailEntryExit>;
/** `InternalErrorExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmInternalErrorExit = FromKvm<InternalErrorExit>;
/** `SystemEventExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmSystemEventExit = FromKvm<SystemEventExit>;
/** `DebugExceptionExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmDebugExit = FromKvm<DebugExit>;
/** `IntrExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmIntrExit = FromKvm<IntrExit>;
/** `IrqWindowOpenExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmIrqWindowOpenExit = FromKvm<IrqWindowOpenExit>;
/** `HypercallExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmHypercallExit = FromKvm<HypercallExit>;
/** `CpuidExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmCpuidExit = FromKvm<CpuidExit>;
/** `MsrExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmMsrExit = FromKvm<MsrExit>;
/** `UnknownExit` of the main package as KVM reports it (`raw` is a {@link KvmRawExit}). */
export type KvmUnknownExit = FromKvm<UnknownExit>;

/** Every exit KvmVcpu.run() reports: the main package's VmExit union with KVM's raw detail. */
export type KvmExit =
  | KvmIoExit
  | KvmMmioExit
  | KvmHltExit
  | KvmShutdownExit
  | KvmFailEntryExit
  | KvmInternalErrorExit
  | KvmSystemEventExit
  | KvmDebugExit
  | KvmIntrExit
  | KvmIrqWindowOpenExit
  | KvmHypercallExit
  | KvmCpuidExit
  | KvmMsrExit
  | KvmUnknownExit;

const F = LAYOUTS.kvm_run.fields;
const INTERNAL_MESSAGES: Record<number, string> = {
  1: "emulation failure",
  2: "simultaneous exception",
  3: "delivery event",
  4: "unexpected exit reason",
};

// kvm_run offsets of the fields every port exit reads, as constants (the per-exit path)
const EXIT_REASON = F.exit_reason;
const IO_DIRECTION = F["io.direction"];
const IO_SIZE = F["io.size"];
const IO_PORT = F["io.port"];
const IO_COUNT = F["io.count"];
const IO_DATA_OFFSET = F["io.data_offset"];

/** Decodes the exits of one vCPU's kvm_run mapping. Keeps its views; allocates only the exit object. */
export class KvmRunDecoder {
  readonly #dv: DataView;
  readonly #buffer: ArrayBuffer;
  readonly #intr: KvmIntrExit = { kind: "intr", raw: { backend: "kvm", code: KVM_EXIT.INTR } };
  /** one raw object per exit code: exits are frequent, their raw part never changes */
  readonly #raws: KvmRawExit[] = [];
  readonly #ioRaw: KvmRawExit;
  /**
   * The data window of the last single port exit, and where it is: almost always the same, so it is
   * reused rather than made per exit (offset and length kept as numbers: a typed array's own
   * byteOffset and length getters cost more than the rest of the decode)
   */
  #ioView: Uint8Array | undefined;
  #ioViewOffset = -1;
  #ioViewLength = -1;

  constructor(run: ArrayBuffer) {
    this.#buffer = run;
    this.#dv = new DataView(run);
    this.#ioRaw = this.#raw(KVM_EXIT.IO);
  }

  /** The exit of an interrupted KVM_RUN (EINTR / kick / immediate_exit). */
  intr(): KvmIntrExit {
    return this.#intr;
  }

  #raw(code: number): KvmRawExit {
    if (code >= 64) return { backend: "kvm", code };
    let raw = this.#raws[code];
    if (raw === undefined) {
      raw = Object.freeze({ backend: "kvm" as const, code });
      this.#raws[code] = raw;
    }
    return raw;
  }

  /** kvm_run.exit_reason of the last exit (a KVM_EXIT_* code). */
  get exitReason(): number {
    return this.#dv.getUint32(EXIT_REASON, true);
  }

  /**
   * Decodes the last exit from kvm_run. Data are views into kvm_run: for io "in" and mmio reads, fill
   * `exit.data` before the next run to answer the guest.
   */
  decode(): KvmExit {
    const dv = this.#dv;
    const code = dv.getUint32(EXIT_REASON, true);
    // port I/O is most exits by far: decoded here, in a function small enough for the exit loop
    // to inline, the other kinds in one of their own
    if (code !== KVM_EXIT.IO) return this.#decodeOther(code);
    const size = dv.getUint8(IO_SIZE) as 1 | 2 | 4;
    const count = dv.getUint32(IO_COUNT, true);
    // a u64 in the ABI, but an offset into the kvm_run mapping: the low half is all of it
    // (read as a number: a BigInt per exit is measurable in the exit loop)
    const offset = dv.getUint32(IO_DATA_OFFSET, true);
    const length = size * count;
    let data = this.#ioView;
    if (data === undefined || this.#ioViewOffset !== offset || this.#ioViewLength !== length) {
      data = this.#newIoView(offset, length, count);
    }
    return {
      kind: "io",
      direction: dv.getUint8(IO_DIRECTION) === KVM_EXIT_IO_OUT ? "out" : "in",
      port: dv.getUint16(IO_PORT, true),
      size: size === 1 || size === 2 || size === 4 ? size : 1,
      count,
      data,
      raw: this.#ioRaw,
    };
  }

  /** A port exit's data window; kept for the next exits when it is a single access's. */
  #newIoView(offset: number, length: number, count: number): Uint8Array {
    const data = new Uint8Array(this.#buffer, offset, length);
    if (count === 1) {
      this.#ioView = data;
      this.#ioViewOffset = offset;
      this.#ioViewLength = length;
    }
    return data;
  }

  #decodeOther(code: number): KvmExit {
    const dv = this.#dv;
    const raw = this.#raw(code);
    switch (code) {
      case KVM_EXIT.MMIO: {
        const length = dv.getUint32(F["mmio.len"], true);
        return {
          kind: "mmio",
          address: Number(dv.getBigUint64(F["mmio.phys_addr"], true)),
          length,
          write: dv.getUint8(F["mmio.is_write"]) !== 0,
          data: new Uint8Array(this.#buffer, F["mmio.data"], Math.min(length, 8)),
          raw,
        };
      }
      case KVM_EXIT.HLT:
        return { kind: "hlt", raw };
      case KVM_EXIT.SHUTDOWN:
        return { kind: "shutdown", raw };
      case KVM_EXIT.FAIL_ENTRY:
        return {
          kind: "fail-entry",
          reason: Number(dv.getBigUint64(F["fail_entry.hardware_entry_failure_reason"], true)),
          raw,
        };
      case KVM_EXIT.INTERNAL_ERROR: {
        const suberror = dv.getUint32(F["internal.suberror"], true);
        const n = Math.min(dv.getUint32(F["internal.ndata"], true), 16);
        const data: bigint[] = [];
        for (let i = 0; i < n; i++) data.push(dv.getBigUint64(F["internal.data"] + 8 * i, true));
        const message = INTERNAL_MESSAGES[suberror];
        return message
          ? { kind: "internal-error", suberror, data, message, raw }
          : { kind: "internal-error", suberror, data, raw };
      }
      case KVM_EXIT.SYSTEM_EVENT:
        return { kind: "system-event", type: dv.getUint32(F["system_event.type"], true), raw };
      case KVM_EXIT.DEBUG:
        return {
          kind: "debug",
          exception: dv.getUint32(F["debug.arch.exception"], true),
          pc: dv.getBigUint64(F["debug.arch.pc"], true),
          dr6: dv.getBigUint64(F["debug.arch.dr6"], true),
          dr7: dv.getBigUint64(F["debug.arch.dr7"], true),
          raw,
        };
      case KVM_EXIT.INTR:
        return { kind: "intr", raw };
      case KVM_EXIT.IRQ_WINDOW_OPEN:
        return { kind: "irq-window-open", raw };
      case KVM_EXIT.HYPERCALL: {
        const args: bigint[] = [];
        for (let i = 0; i < 6; i++) args.push(dv.getBigUint64(F["hypercall.args"] + 8 * i, true));
        return {
          kind: "hypercall",
          nr: dv.getBigUint64(F["hypercall.nr"], true),
          args,
          get ret() {
            return dv.getBigUint64(F["hypercall.ret"], true);
          },
          set ret(v: bigint) {
            dv.setBigUint64(F["hypercall.ret"], BigInt.asUintN(64, v), true);
          },
          raw,
        };
      }
      case KVM_EXIT.X86_RDMSR:
      case KVM_EXIT.X86_WRMSR:
        return {
          kind: "msr",
          write: code === KVM_EXIT.X86_WRMSR,
          index: dv.getUint32(F["msr.index"], true),
          get value() {
            return dv.getBigUint64(F["msr.data"], true);
          },
          set value(v: bigint) {
            dv.setBigUint64(F["msr.data"], BigInt.asUintN(64, v), true);
          },
          raw,
        };
      default:
        return { kind: "unknown", code, raw };
    }
  }
}
