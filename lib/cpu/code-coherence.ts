// Cross-modifying code between vCPUs that run in different threads over one guest memory (SDM
// Vol. 3A 9.1.3): each interpreter keeps its own decode cache, and code another vCPU writes must
// reach it at the latest when it executes a serializing instruction after the write became
// visible (Linux's text_poke relies on exactly that: patch, then an IPI whose delivery and IRET
// serialize every other CPU).
//
// Shared state (smp-memory.ts): a byte per guest-physical page "some vCPU has decoded code here"
// (the code map, never cleared), a generation word CodeGen, a MapEpoch word, and per vCPU an ack
// slot.
//
// 1. A vCPU that builds its first block on a page marks it in the code map (if unmarked) and
//    bumps MapEpoch: markSharedCode. The byte reads MARKING until the bump is done, so a vCPU
//    that finds the page marked by another reads an epoch that covers that mark.
// 2. Every vCPU gives a page marked in the code map only checked write entries (tag + SHARED_TAG:
//    no fast path, plain or compiled, takes them), and every write through one bumps CodeGen
//    after its store (smp-atomic.ts smpWrSlow; locked writes likewise). Writes outside the TLB
//    (exception frames, descriptors, the TSS: system.ts sysWrite, sharedSysWrite) bump it too.
// 3. A vCPU that sees MapEpoch move drops its plain write entries of marked pages, then stores
//    the epoch it read in its ack slot (catchUpCodeMap: at every run(), every POLL_EVERY blocks in
//    the run loop, and at serializing points). Until every other vCPU acked the epoch of a page a
//    vCPU marked or started to use, one of them may still write there through an entry made
//    before the mark, without bumping CodeGen.
// 4. At a serializing point (run() = VM entry, CPUID, IRET, MOV to CR/DR, WRMSR, INVD/WBINVD,
//    LGDT/LIDT/LLDT/LTR, event delivery) serializeCode makes the vCPU's blocks re-check their
//    bytes (devicesRan) when CodeGen moved since it last looked, or while a mark of its own is
//    not acknowledged by everyone yet.
//
// Why nothing is missed: let W be a write by vCPU A to bytes that vCPU B has a block from, on page
// P, and B serialize after W is visible to it. B marked P, or found it marked, before decoding the
// block (markSharedCode runs before the bytes are read); call e the MapEpoch B noted then.
// - W went through a checked entry: A bumped CodeGen after the store (sequentially consistent
//   Atomics), so B's serializing point, which sees W, sees the new CodeGen and re-checks.
// - W went through a plain entry: the entry predates A's catch-up to e (a fill after reading
//   MapEpoch ≥ e sees P marked), so A's ack was below e when W happened. B re-checks at every
//   serializing point until it reads every ack ≥ e, and once more at the one where it does: A
//   stored that ack after dropping the entry, so after W, which that last re-check sees.
// - A was outside run() (parked, ACK_NONE in its slot) when B looked: on its way back A stores its
//   real ack before it reads MapEpoch, so if B read ACK_NONE, A reads an epoch ≥ e and its scan
//   drops the plain entry before A writes anything.
// Afterwards every write to P anywhere goes through a checked entry (first case).
//
// The re-check itself is lazy: devicesRan bumps runEpoch, and each block compares its bytes with
// memory before it runs next (block-cache.ts blockMatches). A block is decoded from a copy of its
// page (Interpreter.lookupBlock), so its ops and the bytes it re-checks against always agree, even
// when another vCPU writes the page while it is being decoded. Between a write and the next
// serializing point a vCPU may still run the old code, as the SDM allows.
//
// For the backend: guestPhysBytes of createSharedMemoryState must cover all guest RAM (pages past
// the map count as code pages: every write there bumps CodeGen); device DMA and other host writes
// to guest RAM call noteHostWrite (or bumpCodeGeneration); a vCPU parks itself whenever run()
// returns (parkCodeMap), so one that sleeps in HLT holds up no one.

import type { Interpreter } from "./interpreter.js";
import { ACK_NONE, atomicViewOf, type SharedMemoryState, SmpWord } from "./smp-memory.js";

/**
 * Tag offset of a write entry to a page in the shared code map: no page address equals page +
 * SHARED_TAG, nor page + CODE_TAG (0.5), so every write takes the slow path, which bumps CodeGen.
 */
export const SHARED_TAG = 0.25;
/** code-map bytes: a vCPU is marking the page (its MapEpoch bump to follow), or has marked it */
const MARKING = 1;
const MARKED = 2;

/** fill(): shared-memory views for the entry, and checked write entries for shared code pages */
export function smpFill(cpu: Interpreter, i: number, page: number, gpaPage: number, bytes: Uint8Array): void {
  const view = atomicViewOf(bytes) as unknown as DataView;
  cpu.tlbRView[i] = view;
  if (gpaPage < 0) return;
  cpu.tlbWView[i] = view;
  const smp = cpu.smp;
  if (smp?.isCode(gpaPage)) cpu.tlbWTag[i] = page + SHARED_TAG;
}

/** the interpreter starts using page `gpaPage` for blocks (Interpreter.markCode) */
export function markSharedCode(cpu: Interpreter, gpaPage: number): void {
  const smp = cpu.smp;
  if (smp === null) return;
  const n = gpaPage / 4096;
  if (n < smp.pages && Atomics.compareExchange(smp.codeMap, n, 0, MARKING) === 0) {
    // the byte first (a vCPU that reads the new epoch sees it), then the epoch, then "done"
    smp.markEpoch = Atomics.add(smp.words, SmpWord.MapEpoch, 1) + 1;
    Atomics.store(smp.codeMap, n, MARKED);
  } else {
    // marked by another vCPU, maybe not acknowledged by everyone yet: wait out its epoch bump
    // (a few instructions of the marker) so that the epoch read covers its mark
    while (n < smp.pages && Atomics.load(smp.codeMap, n) === MARKING);
    smp.markEpoch = Math.max(smp.markEpoch, Atomics.load(smp.words, SmpWord.MapEpoch));
  }
  smp.markConfirmed = false;
  // own write entries of the page refill as checked ones (markCode dropped them)
}

/** drops plain write entries of pages marked in the shared code map since the last look */
export function catchUpCodeMap(cpu: Interpreter): void {
  const smp = cpu.smp;
  if (smp === null) return;
  if (smp.parked) {
    // back from outside run(): the slot says what this vCPU's entries really are before it reads
    // MapEpoch, so a marker that saw it parked has its mark seen by the scan below
    smp.parked = false;
    Atomics.store(smp.acks, smp.vcpu, smp.seenEpoch);
  }
  const e = Atomics.load(smp.words, SmpWord.MapEpoch);
  if (e === smp.seenEpoch) return;
  for (const bank of cpu.tlbBanks) {
    const tags = bank.wTag;
    const gpas = bank.wGpa;
    for (let i = 0; i < tags.length; i++) {
      const t = tags[i];
      // plain entries only (checked ones carry a fraction; NaN is empty)
      if (Number.isInteger(t) && smp.isCode(gpas[i])) tags[i] = Number.NaN;
    }
  }
  smp.seenEpoch = e;
  Atomics.store(smp.acks, smp.vcpu, e);
}

/**
 * The vCPU leaves run(): until it calls catchUpCodeMap again (every run() starts with it; so does
 * event delivery, which the VMX layer may do before run()) it writes nothing through its TLB, so
 * markers need not wait for its acknowledgement (ACK_NONE in its slot).
 */
export function parkCodeMap(cpu: Interpreter): void {
  const smp = cpu.smp;
  if (smp === null || smp.parked) return;
  smp.parked = true;
  Atomics.store(smp.acks, smp.vcpu, ACK_NONE);
}

/** a serializing point: code other vCPUs wrote since the last one is seen from here on */
export function serializeCode(cpu: Interpreter): void {
  const smp = cpu.smp;
  if (smp === null) return;
  catchUpCodeMap(cpu);
  const g = Atomics.load(smp.words, SmpWord.CodeGen);
  let recheck = g !== smp.seenGen;
  if (!smp.markConfirmed) {
    const acks = smp.acks;
    let all = true;
    for (let k = 0; k < acks.length; k++) {
      if (k === smp.vcpu) continue;
      const a = Atomics.load(acks, k);
      if (a !== ACK_NONE && a < smp.markEpoch) {
        all = false;
        break;
      }
    }
    if (all) smp.markConfirmed = true;
    // the block decoded before the confirmation may be stale: check once more after it too
    recheck = true;
  }
  if (recheck) {
    smp.seenGen = g;
    cpu.devicesRan();
  }
}

/**
 * A write of `size` bytes (v, vh) outside the TLB (exception frames, descriptors, the TSS) at
 * m[p], guest-physical cpu.xGpa: one access where aligned, then the generation if it is code.
 */
export function sharedSysWrite(
  cpu: Interpreter,
  m: Uint8Array,
  p: number,
  size: number,
  v: number,
  vh: number,
): void {
  const view = atomicViewOf(m);
  if (size === 1) view.setUint8(p, v);
  else if (size === 2) view.setUint16(p, v);
  else if (size === 4) view.setInt32(p, v);
  else if (size === 8) view.st64(p, v, vh);
  else for (let k = 0; k < size; k++) m[p + k] = k < 4 ? v >> (8 * k) : vh >> (8 * (k - 4));
  noteSharedWrite(cpu, cpu.xGpa - (cpu.xGpa % 4096));
}

/** after a write outside the TLB to guest-physical page `gpaPage` */
export function noteSharedWrite(cpu: Interpreter, gpaPage: number): void {
  const smp = cpu.smp;
  if (smp?.isCode(gpaPage)) Atomics.add(smp.words, SmpWord.CodeGen, 1);
}

/**
 * For the backend: something other than a vCPU (device DMA, the host) wrote guest memory that
 * vCPUs may have code from; each vCPU re-checks its blocks at its next serializing point.
 */
export function bumpCodeGeneration(state: SharedMemoryState): void {
  Atomics.add(wordsOf(state), SmpWord.CodeGen, 1);
}

/**
 * For the backend, after a write by something other than a vCPU (device DMA, the host) to
 * guest-physical [gpa, gpa + length): bumps the generation only if a page of it holds code (true
 * then), so that DMA into data pages costs the vCPUs nothing.
 */
export function noteHostWrite(state: SharedMemoryState, gpa: number, length: number): boolean {
  if (length <= 0) return false;
  const map = codeMapOf(state);
  const first = Math.floor(gpa / 4096);
  const last = Math.floor((gpa + length - 1) / 4096);
  for (let n = first; n <= last; n++) {
    if (n >= state.pages || Atomics.load(map, n) !== 0) {
      bumpCodeGeneration(state);
      return true;
    }
  }
  return false;
}

const wordViews = new WeakMap<SharedArrayBuffer, Int32Array>();
function wordsOf(state: SharedMemoryState): Int32Array {
  let v = wordViews.get(state.words);
  if (v === undefined) {
    v = new Int32Array(state.words);
    wordViews.set(state.words, v);
  }
  return v;
}
const mapViews = new WeakMap<SharedArrayBuffer, Uint8Array>();
function codeMapOf(state: SharedMemoryState): Uint8Array {
  let v = mapViews.get(state.codeMap);
  if (v === undefined) {
    v = new Uint8Array(state.codeMap);
    mapViews.set(state.codeMap, v);
  }
  return v;
}
