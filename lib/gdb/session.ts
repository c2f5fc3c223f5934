// One gdb connection: acks and no-ack mode, the command dispatcher, and stop replies. Packets are
// handled one at a time in arrival order (a `?` waits for the target to halt). All-stop mode with
// one thread per vCPU (thread id = vCPU index + 1), as QEMU's gdbstub: when one vCPU stops, all are
// stopped; Hg picks whose registers g/G/p/P read and whose address translation m/M/X/Z use, Hc (or
// a vCont action's thread) which vCPU a step steps; a stop makes the vCPU that stopped current.

import { fromHex, parseHexNumber, toHex } from "./hex.js";
import { framePacket, type Incoming, PacketReader, unescapeBinary } from "./packet.js";
import { decodeRegister, decodeRegisters, encodeRegister, encodeRegisters } from "./registers.js";
import { type BreakpointType, type GdbTarget, GdbTargetError, type StopEvent } from "./target.js";
import { targetXml } from "./target-xml.js";

/** Largest packet we accept and send (hex digits of a `g` reply fit many times over). */
export const PACKET_SIZE = 0x4000;

const EFAULT = 14;
const EINVAL = 22;

export interface SessionOptions {
  /** called once gdb detaches or kills the target (the connection may then close) */
  onEnd?(how: "detach" | "kill"): void;
  /** a note for the server's log (protocol errors, unknown packets) */
  log?(message: string): void;
}

export function stopReply(ev: StopEvent): string {
  const hex2 = (n: number) => (n & 0xff).toString(16).padStart(2, "0");
  if (ev.kind === "exited") return `W${hex2(ev.code)}`;
  if (ev.kind === "terminated") return `X${hex2(ev.signal)}`;
  let reply = `T${hex2(ev.signal)}thread:${((ev.vcpu ?? 0) + 1).toString(16)};`;
  if (ev.watch) reply += `${ev.watch.type}:${ev.watch.address.toString(16)};`;
  else if (ev.reason) reply += `${ev.reason}:;`;
  return reply;
}

export class GdbSession {
  readonly #target: GdbTarget;
  readonly #send: (bytes: Uint8Array) => void;
  readonly #opts: SessionOptions;
  readonly #reader = new PacketReader();
  #noAck = false;
  #lastSent: Uint8Array | undefined;
  #queue: Promise<void> = Promise.resolve();
  /** gdb resumed the target and waits for a stop reply */
  #running = false;
  #ended = false;
  #ending: "detach" | "kill" | undefined;
  /** vCPU of the Hg thread (registers, memory, breakpoints) */
  #gVcpu = 0;
  /** vCPU of the Hc thread (what c/s step) */
  #cVcpu = 0;

  constructor(target: GdbTarget, send: (bytes: Uint8Array) => void, opts: SessionOptions = {}) {
    this.#target = target;
    this.#send = send;
    this.#opts = opts;
  }

  get running(): boolean {
    return this.#running;
  }

  /** bytes from gdb */
  receive(chunk: Uint8Array): void {
    for (const item of this.#reader.push(chunk)) this.#incoming(item);
  }

  /** The target stopped: the stop reply gdb waits for since it resumed the target. */
  stopped(ev: StopEvent): void {
    if (!this.#running || this.#ended) return;
    this.#running = false;
    this.#stoppedOn(ev);
    this.#reply(stopReply(ev));
  }

  /** gdb's current thread becomes the one that stopped (as it switches to it) */
  #stoppedOn(ev: StopEvent): void {
    if (ev.kind !== "signal") return;
    this.#gVcpu = this.#cVcpu = ev.vcpu ?? 0;
  }

  get #threads(): number {
    return Math.max(1, this.#target.threads?.() ?? 1);
  }

  /** the vCPU of a thread id in hex; undefined when no such thread; "all" for -1, "any" for 0 */
  #thread(id: string): number | "all" | "any" | undefined {
    if (id === "-1") return "all";
    const n = parseHexNumber(id);
    if (n === undefined) return undefined;
    if (n === 0n) return "any";
    return n <= BigInt(this.#threads) ? Number(n) - 1 : undefined;
  }

  /** resolves when the packets received so far have been answered */
  idle(): Promise<void> {
    return this.#queue;
  }

  #incoming(item: Incoming): void {
    switch (item.kind) {
      case "ack":
        this.#lastSent = undefined;
        return;
      case "nack":
        if (this.#lastSent && !this.#noAck) this.#send(this.#lastSent);
        return;
      case "bad-checksum":
        if (!this.#noAck) this.#send(Buffer.from("-"));
        return;
      case "interrupt":
        // after the packets before it: a `c` still queued is running by then
        this.#queue = this.#queue.then(() => {
          if (this.#running) this.#target.interrupt();
        });
        return;
      case "packet": {
        if (!this.#noAck) this.#send(Buffer.from("+"));
        const payload = item.payload;
        this.#queue = this.#queue.then(() => this.#handle(payload)).catch((e) => this.#opts.log?.(String(e)));
      }
    }
  }

  #reply(payload: string | Uint8Array): void {
    if (this.#ended) return;
    const frame = framePacket(payload);
    this.#lastSent = this.#noAck ? undefined : frame;
    this.#send(frame);
  }

  async #handle(raw: Uint8Array): Promise<void> {
    if (this.#ended) return;
    const text = Buffer.from(raw).toString("latin1");
    let reply: string | Uint8Array | undefined;
    try {
      reply = await this.#dispatch(text, raw);
    } catch (e) {
      if (!(e instanceof GdbTargetError)) this.#opts.log?.(`gdb: ${text.slice(0, 40)}: ${String(e)}`);
      reply = `E${((e instanceof GdbTargetError ? e.code : EFAULT) & 0xff).toString(16).padStart(2, "0")}`;
    }
    if (reply !== undefined) this.#reply(reply);
    if (text === "QStartNoAckMode" && reply === "OK") this.#noAck = true;
    if (this.#ending) this.#opts.onEnd?.(this.#ending);
  }

  /** The reply to one packet; undefined: none now (resumed: the stop reply comes later). */
  async #dispatch(text: string, raw: Uint8Array): Promise<string | Uint8Array | undefined> {
    const t = this.#target;
    const c = text[0];
    switch (c) {
      case "?": {
        this.#running = false;
        const ev = await t.halt();
        this.#stoppedOn(ev);
        return stopReply(ev);
      }
      case "g":
        return encodeRegisters(t.readRegisters(this.#gVcpu));
      case "G": {
        const values = decodeRegisters(text.slice(1));
        if (!values) return err(EINVAL);
        t.writeRegisters(values, this.#gVcpu);
        return "OK";
      }
      case "p": {
        const n = parseHexNumber(text.slice(1));
        const r = n === undefined ? undefined : encodeRegister(Number(n), t.readRegisters(this.#gVcpu));
        return r ?? err(EINVAL);
      }
      case "P": {
        const [num, value] = text.slice(1).split("=");
        const n = parseHexNumber(num ?? "");
        const reg = n === undefined || value === undefined ? undefined : decodeRegister(Number(n), value);
        if (!reg) return err(EINVAL);
        t.writeRegisters(new Map([[reg.name, reg.value]]), this.#gVcpu);
        return "OK";
      }
      case "m": {
        const range = addressLength(text.slice(1));
        if (!range) return err(EINVAL);
        const data = t.readMemory(range.address, Math.min(range.length, PACKET_SIZE / 2 - 8), this.#gVcpu);
        return data.length > 0 || range.length === 0 ? toHex(data) : err(EFAULT);
      }
      case "M": {
        const colon = text.indexOf(":");
        const range = addressLength(text.slice(1, colon));
        const data = fromHex(text.slice(colon + 1));
        if (colon < 0 || !range || !data || data.length !== range.length) return err(EINVAL);
        t.writeMemory(range.address, data, this.#gVcpu);
        return "OK";
      }
      case "X": {
        const colon = raw.indexOf(0x3a);
        const range = addressLength(text.slice(1, colon));
        if (colon < 0 || !range) return err(EINVAL);
        const data = unescapeBinary(raw.subarray(colon + 1));
        if (data.length !== range.length) return err(EINVAL);
        if (data.length > 0) t.writeMemory(range.address, data, this.#gVcpu);
        return "OK";
      }
      case "c":
      case "s":
        return this.#resume(c === "c" ? "continue" : "step", text.slice(1), this.#cVcpu);
      case "C":
      case "S": {
        // the signal to deliver has no meaning for a guest: resume as plain c/s
        const addr = text.split(";")[1] ?? "";
        return this.#resume(c === "C" ? "continue" : "step", addr, this.#cVcpu);
      }
      case "Z":
      case "z":
        return this.#breakpoint(c === "Z", text.slice(1));
      case "H": {
        // Hg / Hc: -1 (all) and 0 (any) leave the choice as it is
        const vcpu = this.#thread(text.slice(2));
        if (vcpu === undefined || (text[1] !== "g" && text[1] !== "c")) return err(EINVAL);
        if (typeof vcpu === "number") {
          if (text[1] === "g") this.#gVcpu = vcpu;
          else this.#cVcpu = vcpu;
        }
        return "OK";
      }
      case "T":
        return typeof this.#thread(text.slice(1)) === "number" ? "OK" : err(EINVAL);
      case "D":
        this.#end("detach");
        t.detach();
        return "OK";
      case "k":
        this.#end("kill");
        t.kill();
        return undefined;
      case "q":
      case "Q":
        return this.#query(text);
      case "v":
        return this.#verbose(text);
      default:
        return "";
    }
  }

  /** detach/kill: the connection ends once the reply (if any) is sent */
  #end(how: "detach" | "kill"): void {
    this.#running = false;
    this.#ending = how;
  }

  #resume(mode: "continue" | "step", address: string, vcpu: number): undefined | string {
    if (address) {
      const rip = parseHexNumber(address);
      if (rip === undefined) return err(EINVAL);
      this.#target.writeRegisters(new Map([["rip", rip]]), vcpu);
    }
    this.#running = true;
    this.#target.resume(mode, vcpu);
    return undefined;
  }

  #breakpoint(insert: boolean, args: string): string {
    const [type, addr, kind] = args.split(/[,;]/);
    const ty = Number(type);
    const address = parseHexNumber(addr ?? "");
    const k = parseHexNumber(kind ?? "");
    if (!(ty >= 0 && ty <= 4) || address === undefined || k === undefined) return err(EINVAL);
    const t = this.#target;
    const ok = insert
      ? t.insertBreakpoint(ty as BreakpointType, address, Number(k), this.#gVcpu)
      : t.removeBreakpoint(ty as BreakpointType, address, Number(k), this.#gVcpu);
    return ok ? "OK" : "";
  }

  #query(text: string): string | Uint8Array {
    const name = text.split(/[:,;]/, 1)[0]!;
    switch (name) {
      case "qSupported":
        return [
          `PacketSize=${PACKET_SIZE.toString(16)}`,
          "qXfer:features:read+",
          "swbreak+",
          "hwbreak+",
          "vContSupported+",
          "QStartNoAckMode+",
        ].join(";");
      case "QStartNoAckMode":
        return "OK";
      case "qAttached":
        return "1";
      case "qfThreadInfo":
        return `m${Array.from({ length: this.#threads }, (_, i) => (i + 1).toString(16)).join(",")}`;
      case "qsThreadInfo":
        return "l";
      case "qC":
        return `QC${(this.#gVcpu + 1).toString(16)}`;
      case "qThreadExtraInfo": {
        const vcpu = this.#thread(text.slice("qThreadExtraInfo,".length));
        if (typeof vcpu !== "number") return err(EINVAL);
        return toHex(Buffer.from(`vCPU ${vcpu}`));
      }
      case "qSymbol":
        return "OK";
      case "qXfer":
        return this.#xfer(text);
      case "qRcmd": {
        const command = fromHex(text.slice("qRcmd,".length));
        if (!command) return err(EINVAL);
        if (!this.#target.monitor) return "";
        const out = this.#target.monitor(Buffer.from(command).toString("latin1"), this.#gVcpu);
        return out ? toHex(Buffer.from(out.endsWith("\n") ? out : `${out}\n`)) : "OK";
      }
      default:
        return "";
    }
  }

  /** qXfer:features:read:ANNEX:OFFSET,LENGTH */
  #xfer(text: string): string | Uint8Array {
    const parts = text.split(":");
    if (parts[1] !== "features" || parts[2] !== "read") return "";
    if (parts[3] !== "target.xml") return err(0);
    const range = addressLength(parts[4] ?? "");
    if (!range) return err(EINVAL);
    const doc = Buffer.from(targetXml(), "latin1");
    const from = Number(range.address);
    const chunk = doc.subarray(from, from + range.length);
    const last = from + chunk.length >= doc.length;
    const out = new Uint8Array(chunk.length + 1);
    out[0] = (last ? "l" : "m").charCodeAt(0);
    out.set(chunk, 1);
    return out;
  }

  #verbose(text: string): string | undefined {
    if (text === "vCont?") return "vCont;c;C;s;S";
    if (text.startsWith("vCont;")) {
      // all-stop: a step action (`s:2`, or `s` for the current thread) steps that one vCPU with the
      // others held; otherwise a continue runs them all
      let resume: "continue" | undefined;
      for (const action of text.slice(6).split(";")) {
        const [verb, tid] = action.split(":");
        const v = verb?.[0];
        if (v !== "c" && v !== "C" && v !== "s" && v !== "S") return err(EINVAL);
        const vcpu = tid === undefined ? "all" : this.#thread(tid);
        if (vcpu === undefined) return err(EINVAL);
        if (v === "s" || v === "S")
          return this.#resume("step", "", typeof vcpu === "number" ? vcpu : this.#cVcpu);
        resume = "continue";
      }
      return resume ? this.#resume(resume, "", this.#cVcpu) : err(EINVAL);
    }
    if (text.startsWith("vKill")) {
      this.#end("kill");
      this.#target.kill();
      return "OK";
    }
    return "";
  }

  /** the connection is gone: nothing more is sent */
  close(): void {
    this.#ended = true;
  }
}

function err(code: number): string {
  return `E${code.toString(16).padStart(2, "0")}`;
}

function addressLength(text: string): { address: bigint; length: number } | undefined {
  const [a, l] = text.split(",");
  const address = parseHexNumber(a ?? "");
  const length = parseHexNumber(l ?? "");
  if (address === undefined || length === undefined || length > 0x100000n) return undefined;
  return { address, length: Number(length) };
}
