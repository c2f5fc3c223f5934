// Not a suite: a vitest setup file that puts every interpreter in shared-memory mode before its
// first run() (as if other vCPU threads shared its memory), so that the ordinary test/cpu suites
// hold the mode's paths (smp-atomic.ts accesses, locked instructions, code coherence) to the same
// results: the "shared-memory" project of vitest.config.ts.
import { createSharedMemoryState } from "../../lib/cpu/index.js";
import { Interpreter } from "../../lib/cpu/interpreter.js";

const run = Interpreter.prototype.run;
Interpreter.prototype.run = function (this: Interpreter, budget: number) {
  if (this.smp === null && this.hooks !== null) {
    // attach keeps the architectural state; it starts with an empty TLB and decode cache
    this.attachSharedMemory(createSharedMemoryState(2 ** 32, 2), 0);
  }
  return run.call(this, budget);
};
