// i8254 PIT: three 16-bit down counters at 1.193182 MHz (ports 0x40-0x43) and the speaker/gate
// port 0x61. Counting is computed from the Clock at the time of each access (no ticking), as
// QEMU's i8254 does; channel 0's OUT drives IRQ 0 through poll(), which reports rising edges that
// happened since the previous call even when the loop polled late (lost periods coalesce into one
// interrupt, as they would in the PIC's IRR).

import type { Device, DeviceContext, DeviceRange, IrqLine } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { DeviceOptionReader } from "./options.js";

export const PIT_HZ = 1193182;
const NS_PER_S = 1e9;

/** ticks of the PIT clock in dt ns, without overflowing 2^53 for any dt below 2^53 */
export function nsToTicks(dt: number): number {
  const s = Math.floor(dt / NS_PER_S);
  const rem = dt - s * NS_PER_S;
  return s * PIT_HZ + Math.floor((rem * PIT_HZ) / NS_PER_S);
}

/** the earliest ns offset at which `ticks` ticks have elapsed */
export function ticksToNs(ticks: number): number {
  const s = Math.floor(ticks / PIT_HZ);
  const rem = ticks - s * PIT_HZ;
  return s * NS_PER_S + Math.ceil((rem * NS_PER_S) / PIT_HZ);
}

// read/write access states
const RW_LSB = 1;
const RW_MSB = 2;
const RW_WORD0 = 3;
const RW_WORD1 = 4;

/** One {@link I8254} channel's saved state (registers and latches as the 8254 datasheet names them). */
export interface PitChannelState {
  /** Initial count (0 written means 0x10000). */
  count: number;
  /** Count latched by a counter-latch command. */
  latchedCount: number;
  /** Bytes of the latched count still to read (0: none latched). */
  countLatched: number;
  /** Status byte (read-back command). */
  status: number;
  /** A latched status byte waits to be read. */
  statusLatched: boolean;
  /** Which byte of the count a read returns next (LSB/MSB sequencing). */
  readState: number;
  /** Which byte of the count a write sets next. */
  writeState: number;
  /** The LSB written, waiting for the MSB. */
  writeLatch: number;
  /** Access mode from the control word: LSB, MSB, or LSB then MSB. */
  rwMode: number;
  /** Counter mode, 0 to 5. */
  mode: number;
  /** Counts in BCD. */
  bcd: boolean;
  /** The GATE input level. */
  gate: boolean;
  /** Machine-clock time (ns) the count was loaded or the gate last triggered. */
  loadTime: number;
  /** A count was loaded since the last control word (the counter runs). */
  armed: boolean;
  /** Modes 1 and 5: the gate has triggered the count. */
  gateTriggered: boolean;
}

function toBcd(v: number): number {
  return (
    (v % 10) |
    ((Math.floor(v / 10) % 10) << 4) |
    ((Math.floor(v / 100) % 10) << 8) |
    ((Math.floor(v / 1000) % 10) << 12)
  );
}
function fromBcd(v: number): number {
  return (v & 0xf) + ((v >> 4) & 0xf) * 10 + ((v >> 8) & 0xf) * 100 + ((v >> 12) & 0xf) * 1000;
}

class PitChannel {
  /** initial count; 0 written means 0x10000 (10000 in BCD) */
  count = 0x10000;
  latchedCount = 0;
  countLatched = 0;
  status = 0;
  statusLatched = false;
  readState = RW_WORD0;
  writeState = RW_WORD0;
  writeLatch = 0;
  rwMode = RW_WORD0;
  mode = 3;
  bcd = false;
  gate: boolean;
  loadTime = 0;
  /** a count has been loaded since the last control word (the counter runs) */
  armed = true;

  constructor(gate: boolean) {
    this.gate = gate;
  }

  ticks(now: number): number {
    return nsToTicks(Math.max(0, now - this.loadTime));
  }

  /** current counter value (binary) */
  counter(now: number): number {
    if (!this.armed || !this.gateTriggered) return this.count & 0xffff;
    const d = this.ticks(now);
    const c = this.count;
    switch (this.mode) {
      case 0:
      case 1:
      case 4:
      case 5: {
        // after terminal count the counter wraps and keeps counting down
        const m = this.bcd ? 10000 : 0x10000;
        return (((c - d) % m) + m) % m;
      }
      case 3:
        // square wave: the counter steps by two, reloading each half period
        return c - ((2 * d) % c);
      default:
        return c - (d % c);
    }
  }

  out(now: number): boolean {
    if (!this.armed) return this.mode !== 0;
    if (!this.gateTriggered) return true;
    const d = this.ticks(now);
    const c = this.count;
    switch (this.mode) {
      case 0:
        return d >= c;
      case 1:
        return d >= c;
      case 2:
        // low for the one clock before each reload
        return d % c !== c - 1;
      case 3:
        return d % c < (c + 1) >> 1;
      default:
        // modes 4 and 5: a one-clock low strobe when the count expires
        return d !== c;
    }
  }

  /** mode 1 and 5 wait for a gate rising edge before counting */
  gateTriggered = true;

  /** number of rising edges of OUT in (t0, t1] in ticks, and the tick of the next one after t1 */
  risingEdges(d0: number, d1: number): { edges: number; next: number | undefined } {
    const c = this.count;
    switch (this.mode) {
      case 2:
      case 3: {
        const edges = Math.floor(d1 / c) - Math.floor(d0 / c);
        return { edges, next: (Math.floor(d1 / c) + 1) * c };
      }
      case 0:
      case 1: {
        const at = c;
        return { edges: d0 < at && at <= d1 ? 1 : 0, next: d1 < at ? at : undefined };
      }
      default: {
        const at = c + 1;
        return { edges: d0 < at && at <= d1 ? 1 : 0, next: d1 < at ? at : undefined };
      }
    }
  }
}

/** Options of {@link I8254}. */
export interface I8254Options {
  /** default 0x40 */
  base?: number;
  /** default 0 */
  irq?: number;
  /** map port 0x61 (speaker data and channel 2 gate); default true */
  speakerPort?: boolean;
}

/** {@link I8254}'s saved state (snapshot()/restore()). */
export interface I8254State {
  /** Channels 0, 1 and 2. */
  channels: PitChannelState[];
  /** Port 0x61 bit 1: speaker data enable. */
  speakerData: boolean;
  /** Port 0x61 bit 4: the refresh toggle guests poll for delays. */
  refreshToggle: boolean;
}

/**
 * i8254 PIT: three 16-bit counters at 1.193182 MHz (ports 0x40-0x43) and the speaker/gate port 0x61. Counts
 * follow the machine's clock; channel 0 drives IRQ 0 (missed periods coalesce into one interrupt).
 */
export class I8254 implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "i8254";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** {@inheritDoc Device.irq} */
  readonly irq: number;
  readonly #ch: PitChannel[] = [new PitChannel(true), new PitChannel(true), new PitChannel(false)];
  #ctx: DeviceContext | undefined;
  #line: IrqLine | undefined;
  #lineLevel = false;
  /** channel 0 ticks at the last poll */
  #lastPollTicks = 0;
  #speakerData = false;
  #refresh = false;
  /** interrupts raised on IRQ 0 (rising edges delivered) */
  irqCount = 0;

  constructor(opts?: I8254Options) {
    const o = new DeviceOptionReader(this.name, opts);
    const base = o.port("base", 0x40, 4);
    this.irq = o.irq("irq", 0);
    const ranges: DeviceRange[] = [{ space: "io", base, length: 4 }];
    if (o.boolean("speakerPort", true)) ranges.push({ space: "io", base: 0x61, length: 1 });
    this.ranges = ranges;
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
    this.#line = ctx.irq;
    const now = this.#now();
    for (const c of this.#ch) c.loadTime = now;
    this.#lastPollTicks = 0;
    this.#lineLevel = false;
  }

  #now(): number {
    return this.#ctx?.clock.nowNs() ?? 0;
  }

  /** OUT of a channel now (channel 2's is also bit 5 of port 0x61) */
  output(channel: 0 | 1 | 2): boolean {
    return this.#ch[channel]!.out(this.#now());
  }

  /** Channel 2's gate, as port 0x61 bit 0 drives it. */
  setGate(channel: 0 | 1 | 2, gate: boolean): void {
    const c = this.#ch[channel]!;
    const now = this.#now();
    if (gate && !c.gate) {
      // rising edge: modes 1, 2, 3 and 5 restart from the initial count
      if (c.mode === 1 || c.mode === 5 || c.mode === 2 || c.mode === 3) {
        c.loadTime = now;
        c.gateTriggered = true;
        if (channel === 0) this.#lastPollTicks = 0;
      }
    }
    c.gate = gate;
    if (channel === 0) this.#ctx?.requestPoll?.();
  }

  /** {@inheritDoc Device.read} */
  read(offset: number, _size: number, rangeIndex: number): number {
    const now = this.#now();
    if (rangeIndex === 1) {
      // as QEMU's pcspk: bit 4 toggles each read so refresh-polling delay loops make progress
      this.#refresh = !this.#refresh;
      const ch2 = this.#ch[2]!;
      return (
        (ch2.gate ? 1 : 0) |
        (this.#speakerData ? 2 : 0) |
        (this.#refresh ? 0x10 : 0) |
        (ch2.out(now) ? 0x20 : 0)
      );
    }
    if (offset === 3) return 0xff; // the control word register is write-only
    const c = this.#ch[offset]!;
    if (c.statusLatched) {
      c.statusLatched = false;
      return c.status;
    }
    if (c.countLatched) {
      const v = c.latchedCount;
      switch (c.countLatched) {
        case RW_MSB:
          c.countLatched = 0;
          return (v >> 8) & 0xff;
        case RW_WORD0:
          c.countLatched = RW_MSB;
          return v & 0xff;
        default:
          c.countLatched = 0;
          return v & 0xff;
      }
    }
    const count = this.#visible(c, c.counter(now));
    if (c.readState === RW_LSB) return count & 0xff;
    switch (c.readState) {
      case RW_MSB:
        return (count >> 8) & 0xff;
      case RW_WORD0:
        c.readState = RW_WORD1;
        return count & 0xff;
      case RW_WORD1:
        c.readState = RW_WORD0;
        return (count >> 8) & 0xff;
      default:
        return count & 0xff;
    }
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, _size: number, value: number, rangeIndex: number): void {
    const v = value & 0xff;
    if (rangeIndex === 1) {
      this.#speakerData = (v & 2) !== 0;
      this.setGate(2, (v & 1) !== 0);
      return;
    }
    const now = this.#now();
    if (offset === 3) {
      const sel = v >> 6;
      if (sel === 3) {
        // read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 1-3 pick channels
        for (let i = 0; i < 3; i++) {
          if (!(v & (2 << i))) continue;
          const c = this.#ch[i]!;
          if (!(v & 0x20)) this.#latch(c, now);
          if (!(v & 0x10) && !c.statusLatched) {
            c.status =
              (c.out(now) ? 0x80 : 0) |
              (c.armed ? 0 : 0x40) |
              (c.rwMode << 4) |
              (c.mode << 1) |
              (c.bcd ? 1 : 0);
            c.statusLatched = true;
          }
        }
        return;
      }
      const c = this.#ch[sel]!;
      const access = (v >> 4) & 3;
      if (access === 0) {
        this.#latch(c, now);
        return;
      }
      c.rwMode = access;
      c.readState = access;
      c.writeState = access;
      const mode = (v >> 1) & 7;
      c.mode = mode > 5 ? mode - 4 : mode; // 6 and 7 are aliases of 2 and 3
      c.bcd = (v & 1) !== 0;
      c.countLatched = 0;
      c.statusLatched = false;
      // a control word stops the counter until a count is written; OUT goes low in mode 0
      c.armed = false;
      if (sel === 0) this.#setLine(c.out(now));
      return;
    }
    const c = this.#ch[offset]!;
    switch (c.writeState) {
      case RW_MSB:
        this.#load(offset, v << 8, now);
        break;
      case RW_WORD0:
        c.writeLatch = v;
        c.writeState = RW_WORD1;
        break;
      case RW_WORD1:
        c.writeState = RW_WORD0;
        this.#load(offset, c.writeLatch | (v << 8), now);
        break;
      default:
        this.#load(offset, v, now);
        break;
    }
  }

  /** {@inheritDoc Device.poll} */
  poll(nowNs: number): number | undefined {
    const c = this.#ch[0]!;
    if (!c.armed || !c.gateTriggered) return undefined;
    const d = c.ticks(nowNs);
    const { edges, next } = c.risingEdges(this.#lastPollTicks, d);
    this.#lastPollTicks = d;
    if (edges > 0) {
      // a fresh edge even if the level looked high at the last poll
      if (this.#lineLevel) this.#line?.set(false);
      this.#line?.set(true);
      this.#lineLevel = true;
      this.irqCount++;
    }
    this.#setLine(c.out(nowNs));
    if (next === undefined) return undefined;
    return Math.max(1, c.loadTime + ticksToNs(next) - nowNs);
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    const now = this.#now();
    this.#ch.forEach((c, i) => {
      Object.assign(c, new PitChannel(i !== 2));
      c.loadTime = now;
    });
    this.#lastPollTicks = 0;
    this.#speakerData = false;
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): I8254State {
    return {
      channels: this.#ch.map((c) => ({
        count: c.count,
        latchedCount: c.latchedCount,
        countLatched: c.countLatched,
        status: c.status,
        statusLatched: c.statusLatched,
        readState: c.readState,
        writeState: c.writeState,
        writeLatch: c.writeLatch,
        rwMode: c.rwMode,
        mode: c.mode,
        bcd: c.bcd,
        gate: c.gate,
        loadTime: c.loadTime,
        armed: c.armed,
        gateTriggered: c.gateTriggered,
      })),
      speakerData: this.#speakerData,
      refreshToggle: this.#refresh,
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: I8254State): void {
    if (!Array.isArray(s.channels) || s.channels.length !== 3) {
      throw new DeviceConfigError(this.name, "restore", "state must hold three channels");
    }
    s.channels.forEach((cs, i) => {
      Object.assign(this.#ch[i]!, cs);
    });
    this.#speakerData = s.speakerData;
    this.#refresh = s.refreshToggle;
    this.#lastPollTicks = this.#ch[0]!.ticks(this.#now());
  }

  #visible(c: PitChannel, binary: number): number {
    return c.bcd ? toBcd(binary % 10000) : binary;
  }

  #latch(c: PitChannel, now: number): void {
    if (c.countLatched) return; // a second latch before the first is read is ignored
    c.latchedCount = this.#visible(c, c.counter(now));
    c.countLatched = c.rwMode;
  }

  #load(index: number, raw: number, now: number): void {
    const c = this.#ch[index]!;
    let v = c.bcd ? fromBcd(raw) : raw;
    if (v === 0) v = c.bcd ? 10000 : 0x10000;
    // modes 2 and 3 cannot divide by 1 on a real part; treat as 2 to keep the arithmetic sane
    if (v === 1 && (c.mode === 2 || c.mode === 3)) v = 2;
    c.count = v;
    c.loadTime = now;
    c.armed = true;
    // modes 1 and 5 count only after a gate trigger
    c.gateTriggered = !(c.mode === 1 || c.mode === 5);
    if (index === 0) {
      this.#lastPollTicks = 0;
      this.#setLine(c.out(now));
      this.#ctx?.requestPoll?.();
    }
  }

  #setLine(level: boolean): void {
    if (level === this.#lineLevel) return;
    this.#lineLevel = level;
    this.#line?.set(level);
  }
}
