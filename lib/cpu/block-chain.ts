// Block chaining: a compiled block that leaves through a plain exit (fall-through or branch, no
// generic op and no call out that changed anything) hands over to the compiled block at the new
// RIP without going back through the run loop. Each exit remembers the block it led to, keyed by
// the linear address and Interpreter.linkKey() (the codeEpoch, which anything that changes how
// addresses map to blocks bumps, and the privilege, whose TLB bank the link skips),
// and leads only to a block whose bytes were checked in this run() (Interpreter.runEpoch), so the
// hand-over is a few compares. The budget stays exact: a block runs only when all its
// instructions fit in what is left, as in the run loop. Interrupt windows, shadows and halts can
// only come from generic ops or calls out, after which a block returns -1 and the run loop looks;
// so can RF (IRET), after which the chain ends too.

import type { Block } from "./block-cache.js";
import { FL_RF } from "./flags.js";
import type { Interpreter } from "./interpreter.js";

/** runs `first` (compiled) and the compiled blocks it chains to, within `budget` instructions */
export function runChain(cpu: Interpreter, first: Block, budget: number): void {
  let blk = first;
  let left = budget;
  for (;;) {
    const before = cpu.work();
    const exit = blk.compiled!(cpu, left);
    // RF that a generic op at the block's end (IRET) set: the run loop single-steps the next
    // instruction, which clears it
    if (exit < 0 || (cpu.eflags & FL_RF) !== 0) return;
    // work, not instructions: a REP string instruction ending the block counts its iterations
    left -= cpu.work() - before;
    const base = cpu.effBase[1] + cpu.rip;
    const lin = cpu.mode64 ? base : base >>> 0;
    const key = cpu.linkKey();
    let next: Block | null;
    if (exit === 0) {
      next = blk.link0;
      if (
        next === null ||
        blk.link0Lin !== lin ||
        blk.link0Epoch !== key ||
        (next.checked !== cpu.runEpoch && !cpu.recheck(next, lin))
      ) {
        next = cpu.lookupBlock();
        if (next === null) return;
        blk.link0 = next;
        blk.link0Lin = lin;
        blk.link0Epoch = key;
      }
    } else if (exit === 2) {
      // a side exit (a conditional branch before the block's end): no link of its own
      next = cpu.lookupBlock();
      if (next === null) return;
    } else {
      next = blk.link1;
      if (
        next === null ||
        blk.link1Lin !== lin ||
        blk.link1Epoch !== key ||
        (next.checked !== cpu.runEpoch && !cpu.recheck(next, lin))
      ) {
        next = cpu.lookupBlock();
        if (next === null) return;
        blk.link1 = next;
        blk.link1Lin = lin;
        blk.link1Epoch = key;
      }
    }
    // an uncompiled block goes through the run loop (which counts its runs toward compiling it)
    if (next.compiled === null || next.ops.length > left) return;
    // the run loop asks the host for interrupts every so many blocks, chained ones included
    if (--cpu.pollCountdown <= 0) return;
    cpu.lastBlock = next;
    blk = next;
  }
}
