// What a soft vCPU's worker thread (thread-worker.ts) and the machine's thread (threads.ts) share:
// the words of the vCPU's control block, and the messages on its MessagePort. Words carry what must
// reach a thread that is busy or asleep (kicks, pending interrupts, INIT/SIPI/NMI, "an exit is
// ready"); messages carry the data, read synchronously with receiveMessageOnPort after the word moved.

/** Int32 words of a vCPU's control block (an Int32Array over a SharedArrayBuffer). */
export const W = {
  /** the machine's thread bumps it for each command it posts */
  CMD: 0,
  /** the worker sets it to CMD's value once the command is done (its reply posted) */
  DONE: 1,
  /** the host's kick, latched as the logical processor's hostKick (LogicalProcessorOptions.kickWord) */
  KICK: 2,
  /**
   * The CPU's pending interrupt, kept by the machine's thread: 0 none; IRQ_ASK one whose vector the
   * worker asks for (an "acknowledge" request); IRQ_FAST | vector the local APIC's next vector,
   * which the worker may take at once by turning the word into IRQ_TAKEN | vector | the EOIs it
   * had posted (IRQ_EOIS_SHIFT): the machine's thread then moves it from IRR to ISR, in order with
   * those EOIs, before anything else from this vCPU, and publishes the next (see threads.ts)
   */
  IRQ: 3,
  /** INIT, NMI and SIPI (+ vector) from the APIC bus, taken by the worker at its next entry */
  SIGNALS: 4,
  /** the worker bumps it after posting the exit that ended an entry */
  EXIT: 5,
  /** the worker bumps it after posting a request to the machine's thread (an interrupt acknowledge...) */
  REQUEST: 6,
  /** the machine's thread sets it to REQUEST's value once the reply is posted */
  REPLIED: 7,
  /** the worker failed outside any command (its error posted as a "failed" message) */
  FAILED: 8,
  /** 1: the command is a run encoded in the block's words (thread-codec.ts), no message */
  CMD_FAST: 9,
  /** 1: the exit is encoded in the block's words, no message */
  EXIT_FAST: 10,
  /**
   * What the vCPU is doing inside an entry, published by the worker for the machine's halt checks
   * (which must not call into a running vCPU): one of the SLEEP_* values
   */
  SLEEP: 28,
  /**
   * 1: the last kick asks the entry to end (a stop, a limit); without it a kick only makes the
   * vCPU look at its interrupt and signal words, and an unbounded entry goes on in the thread
   */
  STOP: 29,
  /**
   * 1: a debugger holds the vCPU (another one steps): its entries run no guest instruction and
   * wait for the hold to end, or for a kick that asks for a stop (then "intr")
   */
  HELD: 30,
  /** bumped by the machine's thread after it changed EPT permissions: the worker flushes its cached translations before it runs the guest again */
  INVEPT: 31,
} as const;

/** W.IRQ: an interrupt is pending; its vector is the controller's answer to a request */
export const IRQ_ASK = 1;
/** W.IRQ: the local APIC's vector in bits 7:0 is pending and may be taken without a request */
export const IRQ_FAST = 0x100;
/** W.IRQ: the worker took the vector in bits 7:0; the machine's thread has yet to apply it */
export const IRQ_TAKEN = 0x200;
/** W.IRQ (taken): the low bits of the EOIs posted before it (APIC_SHADOW.EOIS), from this bit up */
export const IRQ_EOIS_SHIFT = 10;
export const IRQ_EOIS_MASK = 0x1fffff;

/** W.SLEEP: the vCPU runs the guest (or is about to) */
export const SLEEP_NONE = 0;
/** W.SLEEP: halted with interrupts enabled; an interrupt wakes it */
export const SLEEP_HALTED = 1;
/** W.SLEEP: halted with interrupts disabled, or waiting for SIPI: only INIT, SIPI or NMI wake it */
export const SLEEP_FOR_GOOD = 2;
/** W.SLEEP: held by a debugger (W.HELD): runs nothing until released */
export const SLEEP_HELD = 3;

/** Int32 words in a control block; three 64-bit slots follow them (TSC_OFFSET_I64, F64_RETIRED, APIC_BASE_I64) */
export const CONTROL_WORDS = 32;
/** byte size of a control block */
export const CONTROL_BYTES = CONTROL_WORDS * 4 + 24;
/** BigInt64 index (over the same buffer) of the vCPU's TSC offset, published at every exit and request */
export const TSC_OFFSET_I64 = CONTROL_WORDS / 2;
/** Float64 index of the vCPU's instructionsRetired(), published with it */
export const F64_RETIRED = CONTROL_WORDS / 2 + 1;
/** BigInt64 index of the vCPU's IA32_APIC_BASE, published with them (the local APIC asks it while the vCPU runs) */
export const APIC_BASE_I64 = CONTROL_WORDS / 2 + 2;

/**
 * The APIC shadow (PoolVcpuLink.apicShadow): word reg >> 4 holds xAPIC register `reg` (page
 * offsets 0x000-0x3F0) as a read would return it. The machine's thread sets VALID while the shadow
 * may serve page reads (a LocalApic on the machine, in xAPIC mode, its page mapped at BASE), X2APIC
 * while that APIC is in x2APIC mode, and POST while the worker may post EOIs: it bumps EOIS for
 * each one (and rings the doorbell), and the machine's thread applies them, in order, before it
 * handles anything else from this vCPU (its next request or exit) and before an INIT resets the APIC.
 */
export const APIC_SHADOW = { VALID: 64, BASE: 65, X2APIC: 66, POST: 67, EOIS: 68, WORDS: 69 } as const;

/**
 * xAPIC registers the worker reads from the shadow: their value changes only by this CPU's own
 * writes (exits or requests, after which the shadow is republished before the vCPU goes on), by an
 * INIT (republished before the signal is posted) or while the vCPU is parked. Left out: what other
 * CPUs or time change underneath (IRR, ISR, TMR, PPR, the timer's current count) and what a read
 * must not see stale (ESR's pending errors become visible only through a write, so ESR itself is
 * stable and served).
 */
export const APIC_SHADOWED_REGS: readonly number[] = [
  0x20, // ID
  0x30, // version
  0x80, // TPR
  0xd0, // LDR
  0xe0, // DFR
  0xf0, // SVR
  0x280, // ESR
  0x300, // ICR low (delivery status: idle once the write that sent it returned)
  0x310, // ICR high
  0x320, // LVT timer
  0x330, // LVT thermal
  0x340, // LVT performance counters
  0x350, // LVT LINT0
  0x360, // LVT LINT1
  0x370, // LVT error
  0x380, // timer initial count
  0x3e0, // timer divide configuration
];

export const SIGNAL_INIT = 1;
export const SIGNAL_NMI = 2;
export const SIGNAL_SIPI = 4;

/** The completion of the last exit, as the machine's handler left it (io/mmio input, hypercall). */
export interface Completion {
  data?: Uint8Array;
  ret?: bigint;
}

/** setInstructionBudget / setEntryDeadline (epoch ms) made since the last command, applied before it */
export interface EntryLimits {
  budget?: { n: number | undefined };
  deadline?: { at: number | undefined };
}

/** Machine's thread -> worker. */
export type Command =
  | { op: "run"; completion: Completion | undefined; limits: EntryLimits }
  | { op: "call"; name: string; args: unknown[]; limits: EntryLimits };

/** An error as it crosses threads. */
export interface WireError {
  name: string;
  message: string;
  /** the worker's stack, kept as the cause's (for bug reports) */
  stack?: string;
  /** the error's own fields (a VmmError's code, a RegisterValueError's register and value...) */
  fields?: Record<string, unknown>;
}

/** Worker -> machine's thread. */
export type WorkerMessage =
  | { t: "ready" }
  | { t: "reply"; ok?: unknown; error?: WireError }
  | { t: "exit"; exit: unknown }
  | { t: "exit-error"; error: WireError }
  | { t: "request"; op: RequestOp; args: unknown[] }
  | { t: "failed"; error: WireError };

/** What the worker asks the machine's thread during an entry (the interrupt controller and APIC are there). */
export type RequestOp =
  | "acknowledge"
  | "tpr-get"
  | "tpr-set"
  | "apic-attached"
  | "apic-x2apic"
  | "apic-set-x2apic"
  | "apic-read-msr"
  | "apic-write-msr";

export function wireError(e: unknown): WireError {
  if (!(e instanceof Error)) return { name: "Error", message: String(e) };
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (typeof v !== "function" && typeof v !== "object") fields[k] = v;
  }
  return { name: e.name, message: e.message, ...(e.stack ? { stack: e.stack } : {}), fields };
}

/** JavaScript's own error classes come back as themselves (callers tell a refused value by RangeError) */
const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  RangeError,
  TypeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/**
 * The error on the machine's thread, of the class it had when that class is a builtin or one of
 * `classes` (nodevmm's errors, which callers tell apart with instanceof), else an Error of its name.
 */
export function fromWire(w: WireError, prefix = "", classes: Readonly<Record<string, unknown>> = {}): Error {
  const known = Object.hasOwn(classes, w.name) ? classes[w.name] : undefined;
  const cause = w.stack ? { cause: { stack: w.stack } } : undefined;
  if (typeof known === "function" && known.prototype instanceof Error) {
    // built without its constructor (whose arguments differ per class), then given its fields
    const e = Object.create(known.prototype as object) as Error;
    Object.assign(e, w.fields ?? {});
    Object.defineProperty(e, "message", { value: prefix + w.message, writable: true, configurable: true });
    if (cause) Object.defineProperty(e, "cause", { value: cause.cause, writable: true, configurable: true });
    Error.captureStackTrace(e, fromWire);
    return e;
  }
  const Ctor = Object.hasOwn(BUILTIN_ERRORS, w.name) ? BUILTIN_ERRORS[w.name]! : Error;
  const e = new Ctor(prefix + w.message, cause);
  if (e.name !== w.name) e.name = w.name;
  return e;
}

/** Bumps word `i` and wakes whoever waits on it. */
export function bump(words: Int32Array, i: number): number {
  const v = Atomics.add(words, i, 1) + 1;
  Atomics.notify(words, i);
  return v;
}
