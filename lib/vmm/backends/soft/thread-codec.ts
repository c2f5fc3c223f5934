// The common hand-overs of a soft vCPU thread in the words of its control block, without a message:
// a run whose completion is a few bytes of input (IN, an MMIO read) and whose limits are none or
// "unbounded", and the exits most guests make (port I/O of one item, MMIO of up to 8 bytes, HLT,
// host interrupts). A message costs a structured clone and a queue on each side, about as much as
// the wake-up itself; the rest (calls, requests, other exits and commands) still go as messages.

import type { RawExit, VmExit } from "../../../types/exits.js";
import type { Completion, EntryLimits } from "./thread-protocol.js";

// words 11-15: a run; 16-27: an exit (see W for 0-10, 28 and 29)
const RUN_FLAGS = 11;
const RUN_LEN = 12;
/** words 13-14: the input bytes, little-endian */
const RUN_D0 = 13;
const E_KIND = 16;
const E_A = 17;
const E_B = 18;
const E_SIZE = 19;
const E_FLAGS = 20;
/** words 21-22: the data bytes, little-endian */
const E_D0 = 21;
const R_REASON = 23;
const R_FIELD = 24;
const R_QLO = 25;
const R_QHI = 26;
const R_LEN = 27;

const RUN_UNBOUNDED = 1;
const RUN_DATA = 2;

const KIND_IO = 1;
const KIND_MMIO = 2;
const KIND_HLT = 3;
const KIND_INTR = 4;

/** the limits SoftThreadVcpu.startEntry(true) gives a thread run */
export const UNBOUNDED: EntryLimits = {
  budget: { n: undefined },
  deadline: { at: Number.POSITIVE_INFINITY },
};

function putBytes(words: Int32Array, at: number, bytes: Uint8Array): void {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < bytes.length && i < 4; i++) lo |= bytes[i]! << (i * 8);
  for (let i = 4; i < bytes.length; i++) hi |= bytes[i]! << ((i - 4) * 8);
  words[at] = lo;
  words[at + 1] = hi;
}

function getBytes(words: Int32Array, at: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const lo = words[at]!;
  const hi = words[at + 1]!;
  for (let i = 0; i < length && i < 4; i++) out[i] = (lo >>> (i * 8)) & 0xff;
  for (let i = 4; i < length; i++) out[i] = (hi >>> ((i - 4) * 8)) & 0xff;
  return out;
}

/** Writes a run into the words; false when it needs a message (hypercall answers, other limits). */
export function writeFastRun(
  words: Int32Array,
  completion: Completion | undefined,
  limits: EntryLimits,
): boolean {
  const unbounded = limits === UNBOUNDED;
  if (!unbounded && (limits.budget !== undefined || limits.deadline !== undefined)) return false;
  if (completion && (completion.ret !== undefined || (completion.data?.length ?? 0) > 8)) return false;
  let flags = unbounded ? RUN_UNBOUNDED : 0;
  if (completion?.data) {
    flags |= RUN_DATA;
    words[RUN_LEN] = completion.data.length;
    putBytes(words, RUN_D0, completion.data);
  }
  words[RUN_FLAGS] = flags;
  return true;
}

export function readFastRun(words: Int32Array): { completion: Completion | undefined; limits: EntryLimits } {
  const flags = words[RUN_FLAGS]!;
  return {
    completion: flags & RUN_DATA ? { data: getBytes(words, RUN_D0, words[RUN_LEN]!) } : undefined,
    limits: flags & RUN_UNBOUNDED ? UNBOUNDED : {},
  };
}

function putRaw(words: Int32Array, raw: RawExit | undefined): boolean {
  if (raw?.backend !== "soft") return false;
  words[R_REASON] = raw.reason;
  words[R_FIELD] = raw.exitReasonField;
  words[R_QLO] = Number(BigInt.asUintN(32, raw.qualification)) | 0;
  words[R_QHI] = Number(BigInt.asUintN(32, raw.qualification >> 32n)) | 0;
  words[R_LEN] = raw.instructionLength;
  return true;
}

function getRaw(words: Int32Array): RawExit {
  return {
    backend: "soft",
    reason: words[R_REASON]!,
    exitReasonField: words[R_FIELD]! >>> 0,
    qualification: (BigInt(words[R_QHI]! >>> 0) << 32n) | BigInt(words[R_QLO]! >>> 0),
    instructionLength: words[R_LEN]!,
  };
}

/** Writes an exit into the words; false when it needs a message. */
export function writeFastExit(words: Int32Array, exit: VmExit): boolean {
  switch (exit.kind) {
    case "io":
      if (exit.count !== 1 || exit.data.length > 4) return false;
      words[E_KIND] = KIND_IO;
      words[E_A] = exit.port;
      words[E_SIZE] = exit.size;
      words[E_FLAGS] = exit.direction === "in" ? 1 : 0;
      putBytes(words, E_D0, exit.data);
      return putRaw(words, exit.raw);
    case "mmio":
      if (exit.length > 8 || exit.data.length > 8 || !Number.isSafeInteger(exit.address)) return false;
      words[E_KIND] = KIND_MMIO;
      words[E_A] = (exit.address % 2 ** 32) | 0;
      words[E_B] = Math.floor(exit.address / 2 ** 32);
      words[E_SIZE] = exit.length;
      words[E_FLAGS] = exit.write ? 1 : 0;
      putBytes(words, E_D0, exit.data);
      return putRaw(words, exit.raw);
    case "hlt":
      words[E_KIND] = KIND_HLT;
      return putRaw(words, exit.raw);
    case "intr":
      words[E_KIND] = KIND_INTR;
      return putRaw(words, exit.raw);
    default:
      return false;
  }
}

export function readFastExit(words: Int32Array): VmExit {
  const raw = getRaw(words);
  switch (words[E_KIND]) {
    case KIND_IO: {
      const size = words[E_SIZE] as 1 | 2 | 4;
      const input = words[E_FLAGS] === 1;
      return {
        kind: "io",
        direction: input ? "in" : "out",
        port: words[E_A]!,
        size,
        count: 1,
        data: input ? new Uint8Array(size) : getBytes(words, E_D0, size),
        raw,
      };
    }
    case KIND_MMIO: {
      const length = words[E_SIZE]!;
      const write = words[E_FLAGS] === 1;
      return {
        kind: "mmio",
        address: (words[E_A]! >>> 0) + words[E_B]! * 2 ** 32,
        length,
        write,
        data: write ? getBytes(words, E_D0, length) : new Uint8Array(length),
        raw,
      };
    }
    case KIND_HLT:
      return { kind: "hlt", raw };
    default:
      return { kind: "intr", raw };
  }
}
