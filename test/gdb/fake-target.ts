// A GdbTarget over plain data for protocol tests: 64 KiB of memory at 0, a register map, and a
// resume that stops at once (or waits for interrupt()). `threadCount` vCPUs share the memory; vCPU n
// reads its registers with RIP 0x1000 + n * 0x100.

import type { RegisterValues } from "../../lib/gdb/registers.js";
import { type BreakpointType, type GdbTarget, GdbTargetError, type StopEvent } from "../../lib/gdb/target.js";

export class FakeTarget implements GdbTarget {
  memory = new Uint8Array(0x10000);
  regs: RegisterValues = new Map([
    ["rax", 0x1122334455667788n],
    ["rip", 0x1000n],
    ["eflags", 0x202n],
    ["cs", 0x8n],
    ["cr0", 0x80000011n],
  ]);
  breakpoints: string[] = [];
  log: string[] = [];
  /** what the next resume stops with; undefined: keeps running until interrupt() */
  nextStop: StopEvent | undefined = { kind: "signal", signal: 5 };
  notify: (ev: StopEvent) => void = () => {};
  running = false;
  threadCount = 1;
  /** the vCPU each request came for, in order ("g1", "m0", "s1", ...) */
  calls: string[] = [];

  async halt(): Promise<StopEvent> {
    this.running = false;
    return { kind: "signal", signal: 5 };
  }
  threads(): number {
    return this.threadCount;
  }
  readRegisters(vcpu = 0): RegisterValues {
    this.calls.push(`g${vcpu}`);
    const r = new Map(this.regs);
    if (vcpu > 0) r.set("rip", 0x1000n + BigInt(vcpu) * 0x100n);
    return r;
  }
  writeRegisters(values: RegisterValues): void {
    for (const [k, v] of values) this.regs.set(k, v);
  }
  readMemory(address: bigint, length: number, vcpu = 0): Uint8Array {
    this.calls.push(`m${vcpu}`);
    if (address >= BigInt(this.memory.length)) throw new GdbTargetError("unmapped", 14);
    const a = Number(address);
    return this.memory.slice(a, Math.min(a + length, this.memory.length));
  }
  writeMemory(address: bigint, data: Uint8Array): void {
    if (address + BigInt(data.length) > BigInt(this.memory.length)) throw new GdbTargetError("unmapped", 14);
    this.memory.set(data, Number(address));
  }
  insertBreakpoint(type: BreakpointType, address: bigint, kind: number, vcpu = 0): boolean {
    this.calls.push(`Z${vcpu}`);
    if (type === 3) return false;
    this.breakpoints.push(`${type}:${address.toString(16)}:${kind}`);
    return true;
  }
  removeBreakpoint(type: BreakpointType, address: bigint, kind: number): boolean {
    const key = `${type}:${address.toString(16)}:${kind}`;
    this.breakpoints = this.breakpoints.filter((b) => b !== key);
    return type !== 3;
  }
  resume(mode: "continue" | "step", vcpu = 0): void {
    this.log.push(mode);
    this.calls.push(`${mode[0]}${vcpu}`);
    this.running = true;
    const stop = this.nextStop;
    if (stop) {
      queueMicrotask(() => {
        this.running = false;
        this.notify(stop);
      });
    }
  }
  interrupt(): void {
    this.log.push("interrupt");
    if (!this.running) return;
    this.running = false;
    queueMicrotask(() => this.notify({ kind: "signal", signal: 2 }));
  }
  detach(): void {
    this.log.push("detach");
  }
  kill(): void {
    this.log.push("kill");
  }
  monitor(command: string): string {
    return `you said ${command}`;
  }
}
