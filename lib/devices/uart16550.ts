// 16550A UART. Register behaviour follows the National datasheet as QEMU's serial.c and
// vm-superio model it, with their fixes: writing IER re-evaluates pending interrupts (THRE
// re-arms when THRI goes 0 -> 1 with the holding register empty), and the idle LSR is THRE|TEMT.
// Transmission is instantaneous: a THR write goes straight to the output (or, in loopback, to the
// receive FIFO), so the 16-byte transmit FIFO never fills.

import type { Device, DeviceContext, DeviceRange, IrqLine } from "./device.js";
import { DeviceConfigError } from "./errors.js";
import { DeviceOptionReader } from "./options.js";
import { type ByteOutput, type ByteSink, byteSink } from "./output.js";

export const UART_FIFO_SIZE = 16;
const BAUD_BASE = 115200;

// IER
const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IER_RLSI = 0x04;
const IER_MSI = 0x08;
// IIR
const IIR_NO_INT = 0x01;
const IIR_ID = 0x0e;
const IIR_MSI = 0x00;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_CTI = 0x0c;
const IIR_FIFO = 0xc0;
// FCR
const FCR_FE = 0x01;
const FCR_RFR = 0x02;
const FCR_XFR = 0x04;
// LCR
const LCR_DLAB = 0x80;
const LCR_BREAK = 0x40;
// MCR
const MCR_LOOP = 0x10;
// LSR
export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_BI = 0x10;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
const LSR_ERRORS = 0x1e;
const LSR_FIFO_ERR = 0x80;
// MSR
const MSR_DCTS = 0x01;
const MSR_TERI = 0x04;
const MSR_DELTAS = 0x0f;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;

const TRIGGER_LEVELS = [1, 4, 8, 14] as const;

/** modem input lines as the far end drives them (ignored in loopback) */
export interface ModemLines {
  /** Clear to send. */
  cts?: boolean;
  /** Data set ready. */
  dsr?: boolean;
  /** Ring indicator. */
  ri?: boolean;
  /** Data carrier detect. */
  dcd?: boolean;
}

/** Options of {@link Uart16550}. */
export interface Uart16550Options {
  /** I/O base; default 0x3f8 (COM1) */
  base?: number;
  /** ISA IRQ; default 4 */
  irq?: number;
  /** where transmitted bytes go; default: discard */
  output?: ByteOutput;
  /** called when receive FIFO space frees up after receive() refused bytes (resume input) */
  onInputSpace?: () => void;
  /** modem lines at reset; default CTS, DSR and DCD asserted, RI not (QEMU's and vm-superio's) */
  modem?: ModemLines;
  /** The device's name; default "uart16550" (give each UART its own when you add several). */
  name?: string;
}

/** {@link Uart16550}'s saved state (snapshot()/restore()). */
export interface Uart16550State {
  /** The receive FIFO, oldest byte first. */
  rx: number[];
  /** Interrupt enable register. */
  ier: number;
  /** FIFO control register. */
  fcr: number;
  /** Line control register. */
  lcr: number;
  /** Modem control register. */
  mcr: number;
  /** Line status register. */
  lsr: number;
  /** Modem status change bits (MSR bits 3:0). */
  msrDeltas: number;
  /** Modem input lines as the far end drives them (MSR bits 7:4). */
  externalLines: number;
  /** Scratch register. */
  scr: number;
  /** Baud-rate divisor latch. */
  divisor: number;
  /** A transmitter-empty interrupt is pending. */
  thrIpending: boolean;
  /** A character-timeout interrupt is pending. */
  timeoutIpending: boolean;
  /** Machine-clock time (ns) a character timeout fires, if armed. */
  timeoutDeadline: number | undefined;
}

function linesToMsr(l: ModemLines): number {
  return (l.cts ? MSR_CTS : 0) | (l.dsr ? MSR_DSR : 0) | (l.ri ? MSR_RI : 0) | (l.dcd ? MSR_DCD : 0);
}

/**
 * 16550A UART (COM1 at 0x3F8, IRQ 4 by default), as QEMU's and vm-superio's: bytes the guest transmits go to
 * `output` at once; host input goes in with receive(), into the 16-byte receive FIFO.
 */
export class Uart16550 implements Device {
  /** {@inheritDoc Device.name} */
  readonly name: string;
  /** {@inheritDoc Device.ranges} */
  readonly ranges: readonly DeviceRange[];
  /** {@inheritDoc Device.irq} */
  readonly irq: number;
  #sink: ByteSink;
  #onInputSpace: (() => void) | undefined;
  #ctx: DeviceContext | undefined;
  #line: IrqLine | undefined;
  #lineLevel = false;
  #resetLines: number;

  #rx: number[] = [];
  #ier = 0;
  #iir = IIR_NO_INT;
  #fcr = 0;
  #lcr = 0;
  #mcr = 0;
  #lsr = LSR_THRE | LSR_TEMT;
  #msrDeltas = 0;
  #externalLines: number;
  #scr = 0;
  #divisor = 12; // 9600 baud, a common firmware default
  #thrIpending = false;
  #timeoutIpending = false;
  #timeoutDeadline: number | undefined;
  #inputRefused = false;
  #txCount = 0;
  #lastRbr = 0;

  constructor(opts?: Uart16550Options) {
    const o = new DeviceOptionReader("uart16550", opts);
    this.name = o.string("name", "uart16550");
    const base = o.port("base", 0x3f8, 8);
    this.irq = o.irq("irq", 4);
    this.ranges = [{ space: "io", base, length: 8 }];
    this.#onInputSpace = o.callback("onInputSpace");
    const modem = o.nested<ModemLines>("modem");
    this.#resetLines = linesToMsr(
      modem
        ? {
            cts: modem.boolean("cts", false),
            dsr: modem.boolean("dsr", false),
            ri: modem.boolean("ri", false),
            dcd: modem.boolean("dcd", false),
          }
        : { cts: true, dsr: true, dcd: true },
    );
    // last: a file output is opened on the first byte, but nothing may throw after the sink exists
    this.#sink = byteSink(o.output("output"));
    this.#externalLines = this.#resetLines;
  }

  /** {@inheritDoc Device.attach} */
  attach(ctx: DeviceContext): void {
    this.#ctx = ctx;
    this.#line = ctx.irq;
    this.#lineLevel = false;
    this.#updateIrq();
  }

  // ---- host side ----

  /**
   * Bytes arriving on the serial line. Returns how many were accepted: the rest did not fit the
   * receive FIFO (1 byte with FIFOs off) and should be offered again after onInputSpace fires.
   * In loopback the line input is disconnected, so nothing is accepted.
   */
  receive(bytes: Uint8Array | readonly number[]): number {
    if (this.#mcr & MCR_LOOP) {
      if (bytes.length > 0) this.#inputRefused = true;
      return 0;
    }
    const room = this.#capacity() - this.#rx.length;
    const n = Math.min(room, bytes.length);
    for (let i = 0; i < n; i++) this.#rx.push(bytes[i]! & 0xff);
    if (n < bytes.length) this.#inputRefused = true;
    if (n > 0) this.#afterReceive();
    return n;
  }

  /**
   * A break condition on the line (e.g. for Linux's magic SysRq): a NUL character with BI set,
   * which raises the line-status interrupt when enabled. Returns false when there is no room.
   */
  receiveBreak(): boolean {
    if (this.#mcr & MCR_LOOP || this.#rx.length >= this.#capacity()) return false;
    this.#rx.push(0);
    this.#lsr |= LSR_BI;
    this.#afterReceive();
    return true;
  }

  /** bytes the receive FIFO can take now */
  get inputSpace(): number {
    return this.#mcr & MCR_LOOP ? 0 : this.#capacity() - this.#rx.length;
  }

  /** Changes the modem input lines; deltas are latched in MSR as the hardware does. */
  setModemLines(lines: ModemLines): void {
    const old = this.#externalLines;
    const next = linesToMsr({
      cts: lines.cts ?? (old & MSR_CTS) !== 0,
      dsr: lines.dsr ?? (old & MSR_DSR) !== 0,
      ri: lines.ri ?? (old & MSR_RI) !== 0,
      dcd: lines.dcd ?? (old & MSR_DCD) !== 0,
    });
    this.#externalLines = next;
    if (!(this.#mcr & MCR_LOOP)) this.#latchDeltas(old, next);
  }

  /** baud rate the guest programmed (115200 / divisor) */
  get baudRate(): number {
    return BAUD_BASE / (this.#divisor || 0x10000);
  }

  /** modem control outputs the guest drives (DTR, RTS, OUT1, OUT2, LOOP bits of MCR) */
  get modemControl(): number {
    return this.#mcr;
  }

  /** Bytes the guest has transmitted since the device was made. */
  get bytesTransmitted(): number {
    return this.#txCount;
  }

  /** Whether the interrupt output is asserted (IIR has something pending). */
  get interruptPending(): boolean {
    return (this.#iir & IIR_NO_INT) === 0;
  }

  // ---- guest side ----

  /** {@inheritDoc Device.read} */
  read(offset: number, _size: number): number {
    switch (offset) {
      case 0:
        if (this.#lcr & LCR_DLAB) return this.#divisor & 0xff;
        return this.#readRbr();
      case 1:
        if (this.#lcr & LCR_DLAB) return (this.#divisor >> 8) & 0xff;
        return this.#ier;
      case 2: {
        const v = this.#iir;
        // reading IIR while it reports THRE acknowledges that interrupt
        if ((v & IIR_ID) === IIR_THRI && !(v & IIR_NO_INT)) {
          this.#thrIpending = false;
          this.#updateIrq();
        }
        return v;
      }
      case 3:
        return this.#lcr;
      case 4:
        return this.#mcr;
      case 5: {
        const v = this.#lsr;
        if (v & (LSR_ERRORS | LSR_FIFO_ERR)) {
          this.#lsr &= ~(LSR_ERRORS | LSR_FIFO_ERR);
          this.#updateIrq();
        }
        return v;
      }
      case 6: {
        const v = this.#lines() | this.#msrDeltas;
        if (this.#msrDeltas) {
          this.#msrDeltas = 0;
          this.#updateIrq();
        }
        return v;
      }
      case 7:
        return this.#scr;
      default:
        return 0xff;
    }
  }

  /** {@inheritDoc Device.write} */
  write(offset: number, _size: number, value: number): void {
    const v = value & 0xff;
    switch (offset) {
      case 0:
        if (this.#lcr & LCR_DLAB) this.#divisor = (this.#divisor & 0xff00) | v;
        else this.#writeThr(v);
        break;
      case 1:
        if (this.#lcr & LCR_DLAB) this.#divisor = (this.#divisor & 0xff) | (v << 8);
        else this.#writeIer(v);
        break;
      case 2:
        this.#writeFcr(v);
        break;
      case 3:
        this.#lcr = v;
        break;
      case 4: {
        const old = this.#lines();
        this.#mcr = v & 0x1f;
        this.#latchDeltas(old, this.#lines());
        break;
      }
      case 5:
        // LSR is read-only (writes are for factory test on real parts)
        break;
      case 6:
        break;
      case 7:
        this.#scr = v;
        break;
    }
  }

  /** {@inheritDoc Device.poll} */
  poll(nowNs: number): number | undefined {
    if (this.#timeoutDeadline === undefined) return undefined;
    if (nowNs >= this.#timeoutDeadline) {
      this.#timeoutDeadline = undefined;
      if (this.#rx.length > 0) {
        this.#timeoutIpending = true;
        this.#updateIrq();
      }
      return undefined;
    }
    return this.#timeoutDeadline - nowNs;
  }

  /** {@inheritDoc Device.reset} */
  reset(): void {
    this.#rx = [];
    this.#ier = 0;
    this.#iir = IIR_NO_INT;
    this.#fcr = 0;
    this.#lcr = 0;
    this.#mcr = 0;
    this.#lsr = LSR_THRE | LSR_TEMT;
    this.#msrDeltas = 0;
    this.#externalLines = this.#resetLines;
    this.#scr = 0;
    this.#divisor = 12;
    this.#thrIpending = false;
    this.#timeoutIpending = false;
    this.#timeoutDeadline = undefined;
    this.#updateIrq();
  }

  /** {@inheritDoc SnapshottableDevice.snapshot} */
  snapshot(): Uart16550State {
    return {
      rx: [...this.#rx],
      ier: this.#ier,
      fcr: this.#fcr,
      lcr: this.#lcr,
      mcr: this.#mcr,
      lsr: this.#lsr,
      msrDeltas: this.#msrDeltas,
      externalLines: this.#externalLines,
      scr: this.#scr,
      divisor: this.#divisor,
      thrIpending: this.#thrIpending,
      timeoutIpending: this.#timeoutIpending,
      timeoutDeadline: this.#timeoutDeadline,
    };
  }

  /** {@inheritDoc SnapshottableDevice.restore} */
  restore(s: Uart16550State): void {
    if (!Array.isArray(s.rx) || s.rx.length > UART_FIFO_SIZE) {
      throw new DeviceConfigError(
        this.name,
        "restore",
        "receive FIFO state is not a list of at most 16 bytes",
      );
    }
    this.#rx = s.rx.map((b) => b & 0xff);
    this.#ier = s.ier & 0x0f;
    this.#fcr = s.fcr & 0xc9;
    this.#iir = this.#fcr & FCR_FE ? IIR_FIFO | IIR_NO_INT : IIR_NO_INT;
    this.#lcr = s.lcr & 0xff;
    this.#mcr = s.mcr & 0x1f;
    this.#lsr = s.lsr & 0xff;
    this.#msrDeltas = s.msrDeltas & MSR_DELTAS;
    this.#externalLines = s.externalLines & 0xf0;
    this.#scr = s.scr & 0xff;
    this.#divisor = s.divisor & 0xffff;
    this.#thrIpending = s.thrIpending;
    this.#timeoutIpending = s.timeoutIpending;
    this.#timeoutDeadline = s.timeoutDeadline;
    this.#updateIrq();
  }

  /** Closes the output when the device opened it (a file path); streams you passed stay open. */
  close(): void {
    this.#sink.close();
  }

  // ---- internals ----

  #capacity(): number {
    return this.#fcr & FCR_FE ? UART_FIFO_SIZE : 1;
  }

  #triggerLevel(): number {
    return TRIGGER_LEVELS[this.#fcr >> 6]!;
  }

  /** time for 4 characters at the programmed rate and frame: the FIFO timeout of the datasheet */
  #timeoutNs(): number {
    const dataBits = 5 + (this.#lcr & 3);
    const stopBits = this.#lcr & 4 ? 2 : 1;
    const parity = this.#lcr & 8 ? 1 : 0;
    const frameBits = 1 + dataBits + parity + stopBits;
    return Math.ceil((4 * frameBits * 1e9) / this.baudRate);
  }

  #afterReceive(): void {
    this.#lsr |= LSR_DR;
    if (this.#fcr & FCR_FE) {
      this.#timeoutIpending = false;
      this.#armTimeout();
    }
    this.#updateIrq();
    this.#ctx?.requestPoll?.();
  }

  #armTimeout(): void {
    const now = this.#ctx?.clock.nowNs() ?? 0;
    this.#timeoutDeadline = now + this.#timeoutNs();
  }

  #readRbr(): number {
    const wasFull = this.#rx.length >= this.#capacity();
    // an empty receiver still shows the last character received, as the hardware does
    if (this.#rx.length > 0) this.#lastRbr = this.#rx.shift()!;
    const v = this.#lastRbr;
    if (this.#rx.length === 0) {
      this.#lsr &= ~(LSR_DR | LSR_BI);
      this.#timeoutDeadline = undefined;
    } else if (this.#fcr & FCR_FE) {
      this.#armTimeout();
    }
    this.#timeoutIpending = false;
    this.#updateIrq();
    if ((wasFull || this.#inputRefused) && !(this.#mcr & MCR_LOOP)) {
      this.#inputRefused = false;
      this.#onInputSpace?.();
    }
    return v;
  }

  #writeThr(v: number): void {
    this.#thrIpending = false;
    this.#lsr &= ~(LSR_THRE | LSR_TEMT);
    this.#updateIrq();
    this.#txCount++;
    if (this.#mcr & MCR_LOOP) {
      this.#loopbackReceive(v);
    } else if (!(this.#lcr & LCR_BREAK)) {
      this.#sink.write(Uint8Array.of(v));
    }
    this.#lsr |= LSR_THRE | LSR_TEMT;
    this.#thrIpending = true;
    this.#updateIrq();
  }

  #loopbackReceive(v: number): void {
    if (this.#rx.length < this.#capacity()) {
      this.#rx.push(v);
    } else if (this.#fcr & FCR_FE) {
      // a full FIFO keeps its contents; the new character is lost
      this.#lsr |= LSR_OE;
    } else {
      // the holding register is overwritten
      this.#rx[0] = v;
      this.#lsr |= LSR_OE;
    }
    this.#afterReceive();
  }

  #writeIer(v: number): void {
    const next = v & 0x0f;
    const changed = this.#ier ^ next;
    const wasHigh = this.#lineLevel;
    this.#ier = next;
    if (changed & IER_THRI) {
      this.#thrIpending = (next & IER_THRI) !== 0 && (this.#lsr & LSR_THRE) !== 0;
    }
    this.#updateIrq();
    // A guest that masks and unmasks IER around its handler must see a fresh edge for what is
    // still pending, or an edge-triggered PIC never delivers it again (vm-superio's fix).
    if (changed && wasHigh && this.interruptPending && this.#line) {
      this.#line.set(false);
      this.#line.set(true);
      this.#lineLevel = true;
    }
  }

  #writeFcr(v: number): void {
    let val = v;
    if ((val ^ this.#fcr) & FCR_FE) val |= FCR_RFR | FCR_XFR;
    if (val & FCR_RFR) {
      const hadInput = this.#rx.length > 0;
      this.#rx = [];
      this.#lsr &= ~(LSR_DR | LSR_BI);
      this.#timeoutDeadline = undefined;
      this.#timeoutIpending = false;
      if (hadInput || this.#inputRefused) {
        this.#inputRefused = false;
        this.#onInputSpace?.();
      }
    }
    if (val & FCR_XFR) {
      this.#lsr |= LSR_THRE | LSR_TEMT;
      this.#thrIpending = true;
    }
    this.#fcr = val & 0xc9;
    this.#iir = (this.#iir & 0x0f) | (this.#fcr & FCR_FE ? IIR_FIFO : 0);
    this.#updateIrq();
  }

  #lines(): number {
    if (!(this.#mcr & MCR_LOOP)) return this.#externalLines;
    // loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
    const m = this.#mcr;
    return ((m & 0x0c) << 4) | ((m & 0x02) << 3) | ((m & 0x01) << 5);
  }

  #latchDeltas(old: number, next: number): void {
    const changed = old ^ next;
    let d = (changed >> 4) & (MSR_DCTS | 0x02 | 0x08); // DCTS, DDSR, DDCD
    if (old & MSR_RI && !(next & MSR_RI)) d |= MSR_TERI; // trailing edge of RI only
    if (d) {
      this.#msrDeltas |= d;
      this.#updateIrq();
    }
  }

  #updateIrq(): void {
    let id = IIR_NO_INT;
    const ier = this.#ier;
    if (ier & IER_RLSI && this.#lsr & LSR_ERRORS) id = IIR_RLSI;
    else if (ier & IER_RDI && this.#timeoutIpending) id = IIR_CTI;
    else if (
      ier & IER_RDI &&
      this.#lsr & LSR_DR &&
      (!(this.#fcr & FCR_FE) || this.#rx.length >= this.#triggerLevel())
    )
      id = IIR_RDI;
    else if (ier & IER_THRI && this.#thrIpending) id = IIR_THRI;
    else if (ier & IER_MSI && this.#msrDeltas) id = IIR_MSI;
    this.#iir = id | (this.#iir & 0xf0);
    const level = id !== IIR_NO_INT;
    if (level !== this.#lineLevel) {
      this.#lineLevel = level;
      this.#line?.set(level);
    }
  }
}
