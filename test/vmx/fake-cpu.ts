// A scripted GuestCpu for testing the VMX layer without the interpreter: the "program" is one step
// per RIP value; each step may consult the hooks the way the interpreter does and stop on an exit.

import type {
  ControlRegister,
  ExtendedState,
  GuestCpu,
  SegmentState,
  SysenterRegister,
  TableState,
} from "../../lib/cpu/guest-cpu.js";
import { type EventType, type NonRootHooks, StopReason } from "../../lib/cpu/hooks.js";

/** A step returns "exit" when a hook answered true, "halt" for a non-exiting HLT, else nothing. */
export type Step = (cpu: FakeCpu) => "exit" | "halt" | "shutdown" | undefined;

export interface Delivered {
  vector: number;
  type: EventType;
  errorCode: number | undefined;
  length: number;
}

export const ctx = (cpu: FakeCpu) => ({ length: 1, linearRip: Number(cpu.getRip()) });

export class FakeCpu implements GuestCpu {
  readonly gprs: bigint[] = new Array(16).fill(0n);
  rip = 0n;
  rflags = 2n;
  readonly segs: SegmentState[] = Array.from({ length: 8 }, () => ({
    selector: 0,
    base: 0n,
    limit: 0,
    ar: 0,
  }));
  gdtr: TableState = { base: 0n, limit: 0 };
  idtr: TableState = { base: 0n, limit: 0 };
  readonly controls = new Map<string, bigint>();
  readonly msrs = new Map<number, bigint>();
  interruptibility = 0;
  tscGuestOffset = 0n;
  activity = 0;
  windowRequests = 0;
  hooks: NonRootHooks | null = null;
  retired = 0;
  eventsDelivered = 0;
  stringIterations = 0;
  tscClock: (() => number) | null = null;
  work(): number {
    return this.retired + this.eventsDelivered + this.stringIterations;
  }
  hostPoll: (() => boolean) | null = null;
  program: Step[] = [];
  readonly delivered: Delivered[] = [];
  extended: ExtendedState = {
    fpu: new Float64Array(8),
    fpuTop: 0,
    fpuTag: 0,
    fpuCw: 0x37f,
    fpuSw: 0,
    xmm: new Int32Array(64),
    mxcsr: 0x1f80,
  };
  getExtendedState(): ExtendedState {
    return { ...this.extended, fpu: this.extended.fpu.slice(), xmm: this.extended.xmm.slice() };
  }
  setExtendedState(s: ExtendedState): void {
    this.extended = { ...s, fpu: s.fpu.slice(), xmm: s.xmm.slice() };
  }
  tlbFlushes = 0;

  getGpr(i: number): bigint {
    return this.gprs[i]!;
  }
  setGpr(i: number, v: bigint): void {
    this.gprs[i] = v;
  }
  getRip(): bigint {
    return this.rip;
  }
  setRip(v: bigint): void {
    this.rip = v;
  }
  getRflags(): bigint {
    return this.rflags;
  }
  getRipNumber(): number {
    return Number(BigInt.asIntN(64, this.rip));
  }
  setRipNumber(v: number): void {
    this.rip = BigInt.asUintN(64, BigInt(v));
  }
  getRflagsNumber(): number {
    return Number(this.rflags & 0xffffffffn);
  }
  getSegmentAr(s: number): number {
    return this.segs[s]!.ar;
  }
  setRflags(v: bigint): void {
    this.rflags = v;
  }
  getSegment(s: number): SegmentState {
    return { ...this.segs[s]! };
  }
  setSegment(s: number, st: SegmentState): void {
    this.segs[s] = { ...st };
  }
  getGdtr(): TableState {
    return { ...this.gdtr };
  }
  setGdtr(t: TableState): void {
    this.gdtr = { ...t };
  }
  getIdtr(): TableState {
    return { ...this.idtr };
  }
  setIdtr(t: TableState): void {
    this.idtr = { ...t };
  }
  getControl(r: ControlRegister | SysenterRegister): bigint {
    return this.controls.get(r) ?? 0n;
  }
  setControl(r: ControlRegister | SysenterRegister, v: bigint): void {
    this.controls.set(r, v);
  }
  getMsr(i: number): bigint | undefined {
    return this.msrs.get(i);
  }
  setMsr(i: number, v: bigint): boolean {
    if (i === 0xdead) return false;
    this.msrs.set(i, v);
    return true;
  }
  deliverEvent(
    vector: number,
    type: EventType,
    errorCode: number | undefined,
    length: number,
  ): StopReason | undefined {
    this.delivered.push({ vector, type, errorCode, length });
    if (type === 4 || type === 5 || type === 6) this.rip += BigInt(length);
    this.rflags &= ~0x200n;
    return undefined;
  }
  run(budget: number): StopReason {
    for (let i = 0; i < budget; i++) {
      if (this.activity === 1) return StopReason.Halted;
      if (this.windowRequests && this.hooks) {
        const interruptible = (this.rflags & 0x200n) !== 0n && (this.interruptibility & 3) === 0;
        if (this.hooks.boundary(interruptible)) return StopReason.Exit;
      }
      // unscripted addresses execute HLT, so a test guest can never spin forever
      const step = this.program[Number(this.rip)] ?? hltStep;
      const r = step(this);
      if (r === "exit") return StopReason.Exit;
      if (r === "shutdown") return StopReason.Shutdown;
      this.rip++;
      this.retired++;
      this.interruptibility &= ~3;
      if (r === "halt") {
        this.activity = 1;
        return StopReason.Halted;
      }
    }
    return StopReason.Budget;
  }
  flushTlb(): void {
    this.tlbFlushes++;
  }
  invalidateCode(): void {}
}

/** HLT as the interpreter executes it. */
export const hltStep: Step = (c) => (c.hooks?.hlt(ctx(c)) ? "exit" : "halt");
