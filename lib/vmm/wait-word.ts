// Waiting for a word of a SharedArrayBuffer to change, blocking (Atomics.wait) or not
// (Atomics.waitAsync): how the machine's thread and its vCPU threads hand exits and commands over.

// Node 20 has Atomics.waitAsync; the TypeScript lib this project targets does not declare it yet.
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      i: number,
      v: number,
      ms: number,
    ):
      | { async: false; value: "not-equal" | "timed-out" }
      | { async: true; value: Promise<"ok" | "timed-out"> };
  }
).waitAsync;

// A wake-up is not an answer: the worker notifies after it bumps DONE, so the notify of one exit can
// land in the wait for the next entry (the main thread saw the bump by polling, handled the exit and
// started again before the notify). Only the word itself says the entry ended; trusting the wake-up
// made the main thread read kvm_run while the guest was still in KVM_RUN (a port exit handled twice).

/** Blocks until ctrl[index] differs from `from` (true) or `ms` pass (false); spurious wake-ups wait on. */
export function waitForChangeSync(ctrl: Int32Array, index: number, from: number, ms: number): boolean {
  const deadline = performance.now() + ms;
  for (;;) {
    if (Atomics.load(ctrl, index) !== from) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(ctrl, index, from, left);
  }
}

/** waitForChangeSync without blocking the event loop. */
export async function waitForChange(
  ctrl: Int32Array,
  index: number,
  from: number,
  ms: number,
): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (Atomics.load(ctrl, index) !== from) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    const w = waitAsync(ctrl, index, from, left);
    if (w.async) await w.value;
  }
}
