import { describe, expect, it } from "vitest";
import { LSR_DR, LSR_OE, LSR_TEMT, LSR_THRE, Uart16550 } from "../../lib/devices/index.js";
import { attach } from "./helpers.js";

const B = 0x3f8;
const RBR = B;
const IER = B + 1;
const IIR = B + 2;
const FCR = B + 2;
const LCR = B + 3;
const MCR = B + 4;
const LSR = B + 5;
const MSR = B + 6;
const SCR = B + 7;

function setup(opts: ConstructorParameters<typeof Uart16550>[0] = {}) {
  const out: number[] = [];
  const uart = new Uart16550({ output: (b) => out.push(...b), ...opts });
  const h = attach(uart);
  return { uart, h, out };
}

describe("16550A UART registers", () => {
  it("resets to idle: LSR = THRE|TEMT, IIR = no interrupt, MSR = DCD|DSR|CTS", () => {
    const { h } = setup();
    expect(h.inb(LSR)).toBe(LSR_THRE | LSR_TEMT);
    expect(h.inb(IIR)).toBe(0x01);
    expect(h.inb(MSR)).toBe(0xb0);
    expect(h.inb(IER)).toBe(0);
  });

  it("accepts a Node Writable such as process.stdout as output", () => {
    // type-level check that the structural output type fits Node's streams; nothing is written
    const uart = new Uart16550({ output: process.stdout });
    expect(uart.bytesTransmitted).toBe(0);
  });

  it("transmits THR writes to the output and keeps the scratch register", () => {
    const { h, out, uart } = setup();
    for (const c of "ok") h.outb(RBR, c.charCodeAt(0));
    expect(String.fromCharCode(...out)).toBe("ok");
    expect(uart.bytesTransmitted).toBe(2);
    h.outb(SCR, 0x5a);
    expect(h.inb(SCR)).toBe(0x5a);
  });

  it("programs the divisor through DLAB and sets the baud rate", () => {
    const { h, uart, out } = setup();
    h.outb(LCR, 0x80);
    h.outb(B, 0x01);
    h.outb(B + 1, 0x00);
    expect(h.inb(B)).toBe(1);
    expect(h.inb(B + 1)).toBe(0);
    h.outb(LCR, 0x03);
    expect(uart.baudRate).toBe(115200);
    expect(out).toEqual([]); // divisor writes are not data
    expect(h.inb(LCR)).toBe(0x03);
    expect(h.inb(IER)).toBe(0); // IER unaffected by the DLM write
  });

  it("receives into a 16-byte FIFO with backpressure and reports FIFO mode in IIR", () => {
    const spaces: number[] = [];
    const { h, uart } = setup({ onInputSpace: () => spaces.push(uart.inputSpace) });
    h.outb(FCR, 0x01);
    expect(h.inb(IIR) & 0xc0).toBe(0xc0);
    const data = Array.from({ length: 20 }, (_, i) => 0x41 + i);
    expect(uart.receive(data)).toBe(16);
    expect(uart.inputSpace).toBe(0);
    expect(h.inb(LSR) & LSR_DR).toBe(LSR_DR);
    expect(h.inb(RBR)).toBe(0x41);
    expect(spaces).toEqual([1]); // told once that room came back
    expect(uart.receive(data.slice(16))).toBe(1);
    const rest: number[] = [];
    while (h.inb(LSR) & LSR_DR) rest.push(h.inb(RBR));
    expect(rest).toEqual(data.slice(1, 17));
  });

  it("holds one byte without FIFOs", () => {
    const { h, uart } = setup();
    expect(uart.receive([1, 2])).toBe(1);
    expect(h.inb(RBR)).toBe(1);
    expect(h.inb(LSR) & LSR_DR).toBe(0);
    expect(h.inb(RBR)).toBe(1); // empty: the last character stays visible
    expect(uart.receive([2])).toBe(1);
  });

  it("clears the receive FIFO with FCR bit 1", () => {
    const { h, uart } = setup();
    h.outb(FCR, 0x01);
    uart.receive([1, 2, 3]);
    h.outb(FCR, 0x03);
    expect(h.inb(LSR) & LSR_DR).toBe(0);
    expect(uart.inputSpace).toBe(16);
  });
});

describe("16550A UART interrupts", () => {
  it("raises THRE when enabled with the holding register empty, cleared by reading IIR", () => {
    const { h } = setup();
    h.outb(IER, 0x02);
    expect(h.irq.level).toBe(true);
    expect(h.inb(IIR)).toBe(0x02);
    expect(h.irq.level).toBe(false);
    expect(h.inb(IIR)).toBe(0x01);
  });

  it("re-asserts THRE after each transmitted byte (a new edge per byte)", () => {
    const { h } = setup();
    h.outb(IER, 0x02);
    h.inb(IIR);
    const before = h.irq.rises;
    h.outb(RBR, 0x41);
    expect(h.irq.rises).toBe(before + 1);
    expect(h.inb(IIR)).toBe(0x02);
  });

  it("re-arms THRE when IER.THRI goes 0 -> 1, even after it was acknowledged (QEMU/vm-superio)", () => {
    const { h } = setup();
    h.outb(IER, 0x02);
    h.inb(IIR); // acknowledged
    h.outb(IER, 0x00);
    const before = h.irq.rises;
    h.outb(IER, 0x02);
    expect(h.irq.rises).toBe(before + 1);
    expect(h.inb(IIR)).toBe(0x02);
  });

  it("gives a fresh edge for a still-pending interrupt when IER is rewritten", () => {
    const { h, uart } = setup();
    h.outb(IER, 0x01);
    uart.receive([7]);
    expect(h.irq.level).toBe(true);
    const before = h.irq.rises;
    h.outb(IER, 0x03); // guest toggles IER while RDA is still pending
    expect(h.irq.rises).toBe(before + 1);
    expect(h.inb(IIR)).toBe(0x04);
  });

  it("orders IIR by priority: line status > received data > THRE > modem status", () => {
    const { h, uart } = setup();
    h.outb(MCR, 0x10); // loopback so we can cause an overrun
    h.outb(IER, 0x0f);
    h.outb(MCR, 0x11); // DTR -> DSR changes: a modem-status delta
    expect(h.inb(IIR)).toBe(0x02); // THRE outranks modem status
    expect(h.inb(IIR)).toBe(0x00); // THRE acknowledged; modem status left
    h.outb(RBR, 1);
    h.outb(RBR, 2); // overruns the one-byte holding register
    expect(h.inb(IIR)).toBe(0x06);
    expect(h.inb(LSR) & LSR_OE).toBe(LSR_OE); // reading LSR clears the error
    expect(h.inb(IIR)).toBe(0x04);
    expect(h.inb(RBR)).toBe(2);
    expect(h.inb(IIR)).toBe(0x02);
    expect(h.inb(IIR) & 0x0f).toBe(0x00);
    h.inb(MSR);
    expect(h.inb(IIR)).toBe(0x01);
    expect(h.irq.level).toBe(false);
    expect(uart.interruptPending).toBe(false);
  });

  it("raises RDA only at the FIFO trigger level, and a character timeout below it", () => {
    const { h, uart } = setup();
    h.outb(LCR, 0x80);
    h.outb(B, 1);
    h.outb(B + 1, 0);
    h.outb(LCR, 0x03);
    h.outb(FCR, 0x81); // FIFO on, trigger at 8 bytes
    h.outb(IER, 0x01);
    uart.receive([1, 2, 3]);
    expect(h.irq.level).toBe(false);
    expect(h.pollRequests).toBeGreaterThan(0);
    const wait = uart.poll(h.clock.ns);
    expect(wait).toBeGreaterThan(0);
    // 4 characters of 10 bits at 115200 baud
    expect(wait).toBe(Math.ceil((4 * 10 * 1e9) / 115200));
    h.clock.advance(wait!);
    expect(uart.poll(h.clock.ns)).toBeUndefined();
    expect(h.inb(IIR)).toBe(0xcc);
    expect(h.inb(RBR)).toBe(1);
    expect(h.inb(IIR)).toBe(0xc1); // the read cleared the timeout; it re-arms for the rest
    uart.receive([4, 5, 6, 7, 8, 9]);
    expect(h.inb(IIR)).toBe(0xc4); // 8 bytes: trigger level reached
  });

  it("reports a received break as a line-status interrupt with a NUL character", () => {
    const { h, uart } = setup();
    h.outb(IER, 0x05);
    expect(uart.receiveBreak()).toBe(true);
    expect(h.inb(IIR)).toBe(0x06);
    expect(h.inb(LSR) & 0x11).toBe(0x11); // BI and DR; reading clears BI
    expect(h.inb(IIR)).toBe(0x04);
    expect(h.inb(RBR)).toBe(0);
    expect(h.irq.level).toBe(false);
  });

  it("signals modem line changes from the far end, with RI on its trailing edge only", () => {
    const { h, uart } = setup();
    h.outb(IER, 0x08);
    uart.setModemLines({ ri: true });
    expect(h.irq.level).toBe(false);
    expect(h.inb(MSR)).toBe(0xf0);
    uart.setModemLines({ ri: false, cts: false });
    expect(h.irq.level).toBe(true);
    expect(h.inb(MSR)).toBe(0xa0 | 0x04 | 0x01);
    expect(h.irq.level).toBe(false);
    expect(h.inb(MSR)).toBe(0xa0);
  });
});

describe("16550A UART loopback", () => {
  it("routes TX to RX and modem outputs to inputs (Linux's autoconfig check)", () => {
    const { h, out, uart } = setup();
    h.outb(MCR, 0x1a); // LOOP | OUT2 | RTS
    expect(h.inb(MSR) & 0xf0).toBe(0x90); // CTS and DCD
    h.outb(RBR, 0x55);
    expect(out).toEqual([]);
    expect(h.inb(LSR) & LSR_DR).toBe(LSR_DR);
    expect(h.inb(RBR)).toBe(0x55);
    expect(uart.receive([1])).toBe(0); // the line input is disconnected
    h.outb(MCR, 0x03);
    h.outb(RBR, 0x56);
    expect(out).toEqual([0x56]);
  });
});

describe("16550A UART snapshot", () => {
  it("restores registers and FIFO contents into a fresh device", () => {
    const { h, uart } = setup();
    h.outb(FCR, 0x01);
    h.outb(IER, 0x01);
    h.outb(SCR, 0x42);
    uart.receive([9, 8]);
    const copy = new Uart16550();
    const h2 = attach(copy);
    copy.restore(JSON.parse(JSON.stringify(uart.snapshot())));
    expect(h2.inb(SCR)).toBe(0x42);
    expect(h2.irq.level).toBe(true);
    expect(h2.inb(RBR)).toBe(9);
    expect(h2.inb(RBR)).toBe(8);
    expect(() => copy.restore({ ...uart.snapshot(), rx: new Array(17).fill(0) })).toThrow(/FIFO/);
  });
});
