// i8042 keyboard controller (0x60 data, 0x64 status/command) with a minimal PS/2 keyboard behind
// it: enough for Linux's i8042/atkbd probes and for BIOS-free guests that use it to reset the
// machine or gate A20. There is no mouse: the AUX port reports "clock line stuck" to its interface
// test and its loopback answers on the keyboard channel, which makes Linux give up on AUX at once
// instead of waiting for timeouts.

import type { Device, DeviceContext, DeviceRange, IrqLine } from "./device.js";
import { DeviceOptionReader } from "./options.js";

// status register
const STAT_OBF = 0x01;
const STAT_SYS = 0x04;
const STAT_CMD = 0x08;
const STAT_UNLOCKED = 0x10;
const STAT_AUX_OBF = 0x20;
// command byte
const MODE_KBD_INT = 0x01;
const MODE_AUX_INT = 0x02;
const MODE_SYS = 0x04;
const MODE_DISABLE_KBD = 0x10;
const MODE_DISABLE_AUX = 0x20;
// output port
export const OUTPORT_RESET = 0x01;
export const OUTPORT_A20 = 0x02;

const QUEUE_MAX = 256;

/** A byte waiting in the i8042's output buffer. */
export interface QueuedByte {
  /** The byte (0 to 0xFF). */
  byte: number;
  /** from the AUX (mouse) channel */
  aux: boolean;
  /** a reply of the controller itself, not blocked by the interface-disable bits */
  controller: boolean;
}

/** Options of {@link I8042}. */
export interface I8042Options {
  /** keyboard IRQ; default 1 */
  irq?: number;
  /** called when the guest changes the A20 gate through the output port */
  onA20?: (enabled: boolean) => void;
  /** A20 at reset; default true (QEMU starts with A20 on) */
  a20?: boolean;
}

/** {@link I8042}'s saved state (snapshot()/restore()). */
export interface I8042State {
  /** The status register (port 0x64 reads). */
  status: number;
  /** The controller command byte. */
  mode: number;
  /** The output port (bit 0 reset, bit 1 A20). */
  outport: number;
  /** Controller command waiting for its data byte on port 0x60, or 0. */
  pendingCommand: number;
  /** Keyboard command waiting for its parameter byte, or 0. */
  kbdPendingCommand: number;
  /** Bytes waiting in the output buffer, oldest first. */
  queue: QueuedByte[];
  /** The last byte read from port 0x60. */
  lastData: number;
  /** The keyboard's scan code set (1 to 3). */
  scanSet: number;
  /** Whether the keyboard scans (commands F4/F5). */
  kbdEnabled: boolean;
}

/**
 * i8042 keyboard controller (port 0x60 data, 0x64 status/command) with a minimal PS/2 keyboard: enough for
 * Linux's probes and for guests that reset the machine (command 0xFE ends the run as "reset") or gate A20
 * through it. There is no mouse.
 */
export class I8042 implements Device {
  /** {@inheritDoc Device.name} */
  readonly name = "i8042";
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[] = [
    { space: "io", base: 0x60, length: 1 },
    { space: "io", base: 0x64, length: 1 },
  ];
  /** {@inheritDoc Device.irq} */
  readonly irq: number;
  #ctx: DeviceContext | undefined;
  #line: IrqLine | undefined;
  #lineLevel = false;
  #onA20: ((enabled: boolean) => void) | undefined;
  #resetA20: boolean;

  #status = STAT_CMD | STAT_UNLOCKED;
  #mode = MODE_KBD_INT | MODE_AUX_INT;
  #outport: number;
  /** controller command waiting for its data byte on port 0x60, or 0 */
  #pendingCommand = 0;
  /** keyboard command waiting for its parameter byte, or 0 */
  #kbdPendingCommand = 0;
  #queue: QueuedByte[] = [];
  #lastData = 0;
  #scanSet = 2;
  #kbdEnabled = true;

  constructor(opts?: I8042Options) {
    const o = new DeviceOptionReader(this.name, opts);
    this.irq = o.irq("irq", 1, 15);
    this.#onA20 = o.callback("onA20");
    this.#resetA20 = o.boolean("a20", true);
    this.#outport = OUTPORT_RESET | (this.#resetA20 ? OUTPORT_A20 : 0) | 0xc0;
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
    this.#line = ctx.irq;
    this.#lineLevel = false;
    this.#updateIrq();
  }

  /** Whether A20 is enabled through the controller's output port. */
  get a20(): boolean {
    return (this.#outport & OUTPORT_A20) !== 0;
  }

  /** The controller's command byte (interrupt enables, translation, interface disables). */
  get commandByte(): number {
    return this.#mode;
  }

  /** The controller's output port (bit 0 reset, bit 1 A20). */
  get outputPort(): number {
    return this.#outport;
  }

  /**
   * Scancodes typed on the keyboard (already in the guest's scan code set; translation is the
   * guest's business). Ignored while the keyboard is disabled. Returns how many were queued.
   */
  sendScancodes(bytes: Uint8Array | readonly number[]): number {
    if (!this.#kbdEnabled) return 0;
    let n = 0;
    for (const b of bytes) {
      if (this.#queue.length >= QUEUE_MAX) break;
      this.#queue.push({ byte: b & 0xff, aux: false, controller: false });
      n++;
    }
    this.#refill();
    return n;
  }

  /** {@inheritDoc Device.read} */
  read(_offset: number, _size: number, rangeIndex: number): number {
    if (rangeIndex === 1) return this.#status;
    return this.#readData();
  }

  /** {@inheritDoc Device.write} */
  write(_offset: number, _size: number, value: number, rangeIndex: number): void {
    const v = value & 0xff;
    if (rangeIndex === 1) {
      this.#status |= STAT_CMD;
      this.#command(v);
    } else {
      this.#status &= ~STAT_CMD;
      this.#data(v);
    }
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#status = STAT_CMD | STAT_UNLOCKED;
    this.#mode = MODE_KBD_INT | MODE_AUX_INT;
    this.#setOutport(OUTPORT_RESET | (this.#resetA20 ? OUTPORT_A20 : 0) | 0xc0);
    this.#pendingCommand = 0;
    this.#kbdPendingCommand = 0;
    this.#queue = [];
    this.#lastData = 0;
    this.#scanSet = 2;
    this.#kbdEnabled = true;
    this.#updateIrq();
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): I8042State {
    return {
      status: this.#status,
      mode: this.#mode,
      outport: this.#outport,
      pendingCommand: this.#pendingCommand,
      kbdPendingCommand: this.#kbdPendingCommand,
      queue: this.#queue.map((e) => ({ ...e })),
      lastData: this.#lastData,
      scanSet: this.#scanSet,
      kbdEnabled: this.#kbdEnabled,
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: I8042State): void {
    this.#status = s.status & 0xff;
    this.#mode = s.mode & 0xff;
    this.#outport = s.outport & 0xff;
    this.#pendingCommand = s.pendingCommand & 0xff;
    this.#kbdPendingCommand = s.kbdPendingCommand & 0xff;
    this.#queue = s.queue
      .slice(0, QUEUE_MAX)
      .map((e) => ({ byte: e.byte & 0xff, aux: e.aux, controller: e.controller }));
    this.#lastData = s.lastData & 0xff;
    this.#scanSet = s.scanSet;
    this.#kbdEnabled = s.kbdEnabled;
    this.#updateIrq();
  }

  // ---- internals ----

  #readData(): number {
    if (!(this.#status & STAT_OBF)) return this.#lastData; // QEMU repeats the last byte
    const head = this.#queue.shift()!;
    this.#lastData = head.byte;
    this.#status &= ~(STAT_OBF | STAT_AUX_OBF);
    this.#refill();
    return head.byte;
  }

  /** moves the next queued byte into the output buffer if it is free */
  #refill(): void {
    if (!(this.#status & STAT_OBF) && this.#queue.length > 0) {
      const next = this.#queue[0]!;
      // a disabled interface holds its device's bytes back; controller replies always pass
      const blocked =
        !next.controller && (next.aux ? this.#mode & MODE_DISABLE_AUX : this.#mode & MODE_DISABLE_KBD);
      if (!blocked) this.#status |= STAT_OBF | (next.aux ? STAT_AUX_OBF : 0);
    }
    this.#updateIrq();
  }

  /** a byte from the controller itself: goes ahead of device bytes, behind the one on show */
  #reply(byte: number): void {
    const at = this.#status & STAT_OBF ? 1 : 0;
    this.#queue.splice(at, 0, { byte, aux: false, controller: true });
    if (this.#queue.length > QUEUE_MAX) this.#queue.pop();
    this.#refill();
  }

  #kbdReply(...bytes: number[]): void {
    for (const b of bytes)
      if (this.#queue.length < QUEUE_MAX) this.#queue.push({ byte: b, aux: false, controller: false });
    this.#refill();
  }

  #command(cmd: number): void {
    if (cmd === 0x20) {
      this.#reply(this.#mode);
    } else if (cmd > 0x20 && cmd < 0x40) {
      this.#reply(0); // other controller RAM bytes: not modelled
    } else if (cmd >= 0x60 && cmd < 0x80) {
      this.#pendingCommand = cmd;
    } else if ((cmd & 0xf0) === 0xf0) {
      // pulse output port lines: bit 0 low pulses the CPU reset line
      if (!(cmd & 0x01)) this.#ctx?.requestStop({ reason: "reset" });
    } else {
      switch (cmd) {
        case 0xa7:
          this.#mode |= MODE_DISABLE_AUX;
          break;
        case 0xa8:
          this.#mode &= ~MODE_DISABLE_AUX;
          break;
        case 0xa9:
          this.#reply(0x02); // AUX interface test: clock line stuck high (no mouse)
          break;
        case 0xaa:
          this.#status |= STAT_SYS;
          this.#reply(0x55);
          break;
        case 0xab:
          this.#reply(0x00); // keyboard interface test passed
          break;
        case 0xad:
          this.#mode |= MODE_DISABLE_KBD;
          break;
        case 0xae:
          this.#mode &= ~MODE_DISABLE_KBD;
          this.#refill();
          break;
        case 0xc0:
          this.#reply(0x00); // input port
          break;
        case 0xd0:
          this.#reply(this.#outport);
          break;
        case 0xd1:
        case 0xd2:
        case 0xd3:
        case 0xd4:
          this.#pendingCommand = cmd;
          break;
        case 0xdd:
          this.#setOutport(this.#outport & ~OUTPORT_A20);
          break;
        case 0xdf:
          this.#setOutport(this.#outport | OUTPORT_A20);
          break;
        default:
          break; // unknown controller commands are ignored, as QEMU does
      }
    }
    this.#updateIrq();
  }

  #data(v: number): void {
    const pending = this.#pendingCommand;
    this.#pendingCommand = 0;
    if (pending >= 0x60 && pending < 0x80) {
      if (pending === 0x60) {
        this.#mode = v;
        this.#status = (this.#status & ~STAT_SYS) | (v & MODE_SYS);
        this.#refill();
      }
      return;
    }
    switch (pending) {
      case 0xd1:
        this.#setOutport(v);
        if (!(v & OUTPORT_RESET)) this.#ctx?.requestStop({ reason: "reset" });
        return;
      case 0xd2:
        this.#reply(v);
        return;
      case 0xd3:
        // AUX loopback: without a mouse the byte comes back on the keyboard channel (see top)
        this.#reply(v);
        return;
      case 0xd4:
        return; // to the mouse: there is none
      default:
        this.#keyboard(v);
    }
  }

  /** a byte written to the keyboard itself */
  #keyboard(v: number): void {
    // writing to the keyboard re-enables its interface (as the 8042 firmware does)
    this.#mode &= ~MODE_DISABLE_KBD;
    const pending = this.#kbdPendingCommand;
    if (pending) {
      this.#kbdPendingCommand = 0;
      if (pending === 0xf0 && v === 0) {
        this.#kbdReply(0xfa, this.#scanSet);
        return;
      }
      if (pending === 0xf0 && v >= 1 && v <= 3) this.#scanSet = v;
      this.#kbdReply(0xfa);
      return;
    }
    switch (v) {
      case 0xed: // set LEDs
      case 0xf0: // get/set scan code set
      case 0xf3: // typematic rate
        this.#kbdPendingCommand = v;
        this.#kbdReply(0xfa);
        break;
      case 0xee: // echo
        this.#kbdReply(0xee);
        break;
      case 0xf2: // identify: MF2 keyboard
        this.#kbdReply(0xfa, 0xab, 0x83);
        break;
      case 0xf4:
        this.#kbdEnabled = true;
        this.#kbdReply(0xfa);
        break;
      case 0xf5:
        this.#kbdEnabled = false;
        this.#kbdReply(0xfa);
        break;
      case 0xf6:
        this.#scanSet = 2;
        this.#kbdEnabled = true;
        this.#kbdReply(0xfa);
        break;
      case 0xff: // reset and self-test
        this.#scanSet = 2;
        this.#kbdEnabled = true;
        this.#queue = this.#queue.filter((e) => e.aux);
        this.#status &= ~(STAT_OBF | STAT_AUX_OBF);
        this.#kbdReply(0xfa, 0xaa);
        break;
      default:
        this.#kbdReply(0xfa);
        break;
    }
  }

  #setOutport(v: number): void {
    const old = this.#outport;
    this.#outport = v & 0xff;
    if ((old ^ v) & OUTPORT_A20) this.#onA20?.((v & OUTPORT_A20) !== 0);
  }

  #updateIrq(): void {
    const obf = (this.#status & STAT_OBF) !== 0;
    const aux = (this.#status & STAT_AUX_OBF) !== 0;
    // only the keyboard channel has a line here (IRQ 1); an AUX byte would go to IRQ 12
    const level = obf && !aux && (this.#mode & MODE_KBD_INT) !== 0;
    if (level !== this.#lineLevel) {
      this.#lineLevel = level;
      this.#line?.set(level);
    }
  }
}
