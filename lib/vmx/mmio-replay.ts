// MMIO that completes exactly once. An instruction that touches MMIO leaves non-root operation at
// its first access the host has not completed yet (an EPT violation); the host emulates that one
// access and enters again, and the instruction runs again from its start. Its accesses the host
// already completed are then answered from this log, in program order and matched by position (not
// by address: a read-modify-write reads and writes the same address), so each reaches the device
// once, and the next one exits. This is the "fragment" bookkeeping of KVM's and Bochs' emulators,
// kept beside the processor as a real CPU keeps a partly done instruction's state.
//
// The log belongs to one execution of one instruction (one iteration of a REP string instruction),
// named by the processor's work count and RIP when its first access was made: once an instruction
// retires, an iteration ends or an event is delivered, the work count moves on and the log is
// dropped at the next access.

/** An MMIO access the host emulated, as it gives it back to the processor. */
export interface MmioCompletion {
  gpa: number;
  size: number;
  write: boolean;
  /**
   * the value read: with `hi`, bits 31:0; without it the whole value (exact up to 2^53, the
   * older form hosts may still use for 8-byte reads)
   */
  value: number;
  /** bits 63:32 of an 8-byte read */
  hi?: number;
}

const TWO32 = 4294967296;

export class MmioReplay {
  /** the completed accesses of the instruction in progress, in program order */
  readonly done: MmioCompletion[] = [];
  #work = -1;
  #rip = -1n;
  /** position in `done` of the next access the instruction makes */
  #next = 0;
  /** bits 63:32 of the last 8-byte read replay() answered */
  high = 0;

  /** a VM entry: an instruction left half done runs again from its first access */
  rewind(): void {
    this.#next = 0;
  }

  /**
   * The instruction at `rip`, with the processor's work count at `work`, makes its next MMIO
   * access. Returns its completion when the host already emulated it (a read's value: bits 31:0,
   * the rest in `high`), or undefined when it must exit for it.
   */
  replay(work: number, rip: bigint, gpa: number, size: number, write: boolean): MmioCompletion | undefined {
    if (work !== this.#work || rip !== this.#rip) {
      // another instruction (or iteration): what the log holds was the last one's
      this.done.length = 0;
      this.#work = work;
      this.#rip = rip;
      this.#next = 0;
    }
    const i = this.#next;
    const c = this.done[i];
    if (c === undefined) return undefined;
    if (c.gpa !== gpa || c.size !== size || c.write !== write) {
      // the instruction took another course than when these completed (the host changed its
      // operands): from here on they are not its accesses
      this.done.length = i;
      return undefined;
    }
    this.#next = i + 1;
    if (size > 4 && !write) {
      this.high = c.hi ?? Math.floor(c.value / TWO32) >>> 0;
    }
    return c;
  }

  /** the host emulated the access the last exit reported */
  complete(c: MmioCompletion): void {
    this.done.push(c);
  }

  /**
   * An instruction (at `rip`, work count `work`) has accesses the host completed but has not
   * retired yet: no event may be delivered before it runs to its end, or those accesses would be
   * made again.
   */
  pending(work: number, rip: bigint): boolean {
    return this.done.length > 0 && this.current(work, rip);
  }

  /** the log is that of the instruction at `rip` with work count `work` */
  current(work: number, rip: bigint): boolean {
    return work === this.#work && rip === this.#rip;
  }

  /** forgets the instruction in progress (the host completed it some other way) */
  drop(): void {
    this.done.length = 0;
    this.#work = -1;
    this.#next = 0;
  }

  /**
   * Takes over another processor's instruction in progress (a vCPU migrating between logical
   * processors in the middle of one): the work count restarts with the new processor's interpreter.
   */
  adopt(from: MmioReplay, work: number, rip: bigint): void {
    this.done.length = 0;
    this.done.push(...from.done);
    this.#work = work;
    this.#rip = rip;
    this.#next = 0;
  }
}

/** bits 31:0 of a completion's read value */
export function completionLow(c: MmioCompletion): number {
  return c.hi === undefined && c.size > 4 ? c.value % TWO32 : c.value >>> 0;
}
