// The local APIC's x2APIC mode (SDM vol. 3 10.12) and TSC-deadline timer (10.5.4.1), driven as a CPU
// drives them: its MSRs through readMsr/writeMsr (undefined / false = #GP), IA32_APIC_BASE.EXTD
// through setX2apic, a fake clock and a TSC that follows it at 2 GHz. IPIs with 32-bit destinations
// travel PcInterrupts' APIC bus.

import { describe, expect, it } from "vitest";
import { LAPIC_VERSION, LocalApic, PcInterrupts, LapicReg as R } from "../../lib/devices/index.js";
import { x2apicLogicalId } from "../../lib/devices/lapic-x2apic.js";
import { attach, FakeClock } from "./helpers.js";

const TSC_HZ = 2_000_000_000;
/** a TSC at 2 ticks per ns of the fake clock, offset as a guest may have moved it */
const tscOf = (clock: FakeClock, offset = 0n) => ({
  read: () => BigInt(clock.ns) * 2n + offset,
  hz: TSC_HZ,
});

function x2apic(id = 0) {
  const dev = new LocalApic({ id });
  const h = attach(dev);
  dev.tsc = tscOf(h.clock);
  dev.setX2apic(true);
  const rd = (msr: number) => dev.readMsr(msr);
  const wr = (msr: number, v: bigint | number) => dev.writeMsr(msr, BigInt(v));
  return { dev, h, clock: h.clock, rd, wr };
}

describe("x2APIC mode: the register MSRs", () => {
  it("the registers are MSRs only in x2APIC mode; the MMIO page then answers as a disabled APIC's", () => {
    const dev = new LocalApic({ id: 3 });
    attach(dev);
    expect(dev.readMsr(0x803)).toBeUndefined();
    expect(dev.writeMsr(0x808, 0x20n)).toBe(false);
    expect(dev.read(R.VERSION, 4, 0)).toBe(LAPIC_VERSION);
    dev.setX2apic(true);
    expect(dev.readMsr(0x803)).toBe(BigInt(LAPIC_VERSION));
    expect(dev.read(R.VERSION, 4, 0)).toBe(0xffffffff);
    dev.write(R.TPR, 4, 0x30, 0);
    expect(dev.readMsr(0x808)).toBe(0n);
  });

  it("the 32-bit x2APIC ID and the logical ID derived from it (cluster << 16 | 1 << (id & 15)), both read-only", () => {
    const dev = new LocalApic({ id: 0x13 });
    attach(dev);
    dev.write(R.ID, 4, 0x05000000, 0); // what xAPIC software wrote is not kept
    dev.write(R.LDR, 4, 0x80000000, 0);
    dev.setX2apic(true);
    expect(dev.readMsr(0x802)).toBe(0x13n);
    expect(dev.readMsr(0x80d)).toBe(0x10008n);
    expect(x2apicLogicalId(0x13)).toBe(0x10008);
    expect(x2apicLogicalId(0)).toBe(1);
    expect(x2apicLogicalId(0x2f)).toBe(0x28000);
    expect(dev.writeMsr(0x802, 0n)).toBe(false);
    expect(dev.writeMsr(0x80d, 1n)).toBe(false);
  });

  it("registers that do not exist in x2APIC mode are #GP: APR, RRD, DFR, ICR high, CMCI, the gaps, 0x840 and up", () => {
    const { rd, wr } = x2apic();
    for (const msr of [
      0x800, 0x801, 0x804, 0x807, 0x809, 0x80c, 0x80e, 0x829, 0x82f, 0x831, 0x83a, 0x83d, 0x840, 0x8ff,
    ]) {
      expect(rd(msr), `RDMSR 0x${msr.toString(16)}`).toBeUndefined();
      expect(wr(msr, 0), `WRMSR 0x${msr.toString(16)}`).toBe(false);
    }
  });

  it("write-only EOI and SELF IPI cannot be read; read-only registers cannot be written", () => {
    const { rd, wr } = x2apic();
    expect(rd(0x80b)).toBeUndefined();
    expect(rd(0x83f)).toBeUndefined();
    for (const msr of [0x802, 0x803, 0x80a, 0x80d, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839]) {
      expect(rd(msr), `RDMSR 0x${msr.toString(16)}`).toBeDefined();
      expect(wr(msr, 0), `WRMSR 0x${msr.toString(16)}`).toBe(false);
    }
  });

  it("reserved bits are #GP (bits 63:32 of 32-bit registers, TPR 31:8, SVR 31:10, TDCR, SELF IPI 31:8, a non-zero EOI or ESR, ICR 12-13/16-17/20-31)", () => {
    const { rd, wr } = x2apic();
    expect(wr(0x808, 0x1_0000_0000n)).toBe(false);
    expect(wr(0x808, 0x100)).toBe(false);
    expect(wr(0x808, 0xff)).toBe(true);
    expect(rd(0x808)).toBe(0xffn);
    expect(wr(0x80f, 0x400)).toBe(false);
    expect(wr(0x80f, 0x1000)).toBe(false); // EOI-broadcast suppression is not offered
    expect(wr(0x80f, 0x3ff)).toBe(true);
    expect(wr(0x83e, 0x4)).toBe(false);
    expect(wr(0x83e, 0xb)).toBe(true);
    expect(wr(0x83f, 0x100)).toBe(false);
    expect(wr(0x80b, 1)).toBe(false);
    expect(wr(0x80b, 0)).toBe(true);
    expect(wr(0x828, 1)).toBe(false);
    expect(wr(0x828, 0)).toBe(true);
    for (const bit of [12, 13, 16, 17, 20, 31])
      expect(wr(0x830, 1n << BigInt(bit)), `ICR bit ${bit}`).toBe(false);
    expect(wr(0x832, 0x80000)).toBe(false); // LVT timer bit 19
    expect(wr(0x832, 0x710ff)).toBe(true); // the delivery status bit is read-only, not reserved
    expect(rd(0x832)).toBe(0x700ffn);
    expect(wr(0x835, 0x2_0000)).toBe(false);
    expect(wr(0x837, 0x700)).toBe(false); // the error LVT has no delivery mode
    expect(wr(0x838, 0xffffffff)).toBe(true);
    expect(wr(0x838, 0x1_0000_0000n)).toBe(false);
  });

  it("TPR, PPR, IRR/ISR and EOI work through the MSRs as through the page", () => {
    const { dev, rd, wr } = x2apic();
    expect(wr(0x80f, 0x1ff)).toBe(true);
    dev.acceptInterrupt(0x51, false);
    expect(rd(0x822)).toBe(1n << 17n); // IRR bits 64-95: 0x51
    expect(dev.acknowledge()).toBe(0x51);
    expect(rd(0x812)).toBe(1n << 17n); // ISR
    expect(rd(0x80a)).toBe(0x50n); // PPR: the class in service
    expect(wr(0x80b, 0)).toBe(true);
    expect(rd(0x812)).toBe(0n);
    expect(wr(0x808, 0x60)).toBe(true);
    expect(rd(0x80a)).toBe(0x60n);
    expect(dev.tpr).toBe(0x60);
  });

  it("SELF IPI (0x83F) raises its vector in this APIC; a vector below 16 sets 'send illegal vector' in the ESR", () => {
    const { dev, rd, wr } = x2apic();
    wr(0x80f, 0x1ff);
    expect(wr(0x83f, 0x77)).toBe(true);
    expect(dev.pendingVector()).toBe(0x77);
    expect(rd(0x830)).toBe(0n); // the ICR is left as it was
    expect(wr(0x83f, 0x05)).toBe(true);
    wr(0x828, 0);
    expect(rd(0x828)).toBe(0x20n);
  });

  it("the 64-bit ICR reads back as written (destination in 63:32), without a delivery status bit", () => {
    const { rd, wr } = x2apic();
    wr(0x80f, 0x1ff);
    expect(wr(0x830, (0x1234_5678n << 32n) | 0x4_40f1n)).toBe(true);
    expect(rd(0x830)).toBe((0x1234_5678n << 32n) | 0x4_40f1n);
  });

  it("INIT keeps x2APIC mode and the derived logical ID; RESET goes back to xAPIC mode", () => {
    const { dev, rd, wr } = x2apic(5);
    wr(0x808, 0x40);
    dev.initReset();
    expect(dev.x2apic).toBe(true);
    expect(rd(0x808)).toBe(0n);
    expect(rd(0x80d)).toBe(BigInt(x2apicLogicalId(5)));
    expect(rd(0x802)).toBe(5n);
    dev.reset();
    expect(dev.x2apic).toBe(false);
    expect(rd(0x802)).toBeUndefined();
    expect(dev.read(R.ID, 4, 0)).toBe(0x05000000);
  });

  it("leaving x2APIC mode (to disabled) keeps only the APIC ID; the page answers again once it is xAPIC", () => {
    const { dev, wr } = x2apic(2);
    wr(0x80f, 0x1ff);
    wr(0x808, 0x20);
    dev.setX2apic(false);
    expect(dev.read(R.ID, 4, 0)).toBe(0x02000000);
    expect(dev.read(R.TPR, 4, 0)).toBe(0);
    expect(dev.read(R.SVR, 4, 0)).toBe(0xff);
    expect(dev.read(R.LDR, 4, 0)).toBe(0);
  });

  it("x2APIC mode and an armed deadline survive a snapshot as plain JSON", () => {
    const a = x2apic(1);
    a.wr(0x80f, 0x1ff);
    a.wr(0x832, 0x40040);
    a.wr(0x6e0, 2_000_000n);
    const b = new LocalApic({ id: 1 });
    const hb = attach(b);
    hb.clock.ns = a.clock.ns;
    b.tsc = tscOf(hb.clock);
    b.restore(JSON.parse(JSON.stringify(a.dev.snapshot())));
    expect(b.x2apic).toBe(true);
    expect(b.readMsr(0x6e0)).toBe(2_000_000n);
    hb.clock.ns = 1_000_000;
    b.poll(hb.clock.ns);
    expect(b.pendingVector()).toBe(0x40);
    expect(() => b.restore({ ...a.dev.snapshot(), tscDeadline: { value: "x", atNs: 0 } })).toThrow(/decimal/);
  });
});

describe("TSC-deadline mode", () => {
  function deadline(offset = 0n) {
    const dev = new LocalApic();
    const h = attach(dev);
    dev.tsc = tscOf(h.clock, offset);
    const rdReg = (reg: number) => dev.read(reg, 4, 0);
    const wrReg = (reg: number, v: number) => dev.write(reg, 4, v, 0);
    wrReg(R.SVR, 0x1ff);
    return { dev, h, clock: h.clock, rdReg, wrReg };
  }

  it("IA32_TSC_DEADLINE reads 0 and ignores writes outside TSC-deadline mode (never #GP)", () => {
    const { dev, wrReg } = deadline();
    wrReg(R.LVT_TIMER, 0x40); // one-shot
    expect(dev.writeMsr(0x6e0, 1234n)).toBe(true);
    expect(dev.readMsr(0x6e0)).toBe(0n);
    wrReg(R.LVT_TIMER, 0x40040);
    expect(dev.readMsr(0x6e0)).toBe(0n);
    expect(dev.writeMsr(0x6e0, 1234n)).toBe(true);
    expect(dev.readMsr(0x6e0)).toBe(1234n);
  });

  it("fires when the TSC reaches the deadline, then disarms itself (reads 0)", () => {
    const { dev, h, clock, wrReg } = deadline(1000n);
    wrReg(R.LVT_TIMER, 0x40045);
    clock.ns = 100;
    // TSC now 1200: 1 ms (2,000,000 ticks) ahead
    const polls = h.pollRequests;
    dev.writeMsr(0x6e0, 1200n + 2_000_000n);
    expect(h.pollRequests).toBeGreaterThan(polls);
    expect(dev.poll(clock.ns)).toBe(1_000_000);
    clock.ns += 999_999;
    expect(dev.poll(clock.ns)).toBe(1);
    expect(dev.pendingVector()).toBe(-1);
    clock.ns += 1;
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(dev.pendingVector()).toBe(0x45);
    expect(dev.readMsr(0x6e0)).toBe(0n);
    // once only
    dev.acknowledge();
    clock.ns += 10_000_000;
    dev.poll(clock.ns);
    expect(dev.pendingVector()).toBe(-1);
  });

  it("a deadline already passed fires at the next poll; 0 disarms; a new value re-arms", () => {
    const { dev, clock, wrReg } = deadline();
    wrReg(R.LVT_TIMER, 0x40046);
    clock.ns = 5000;
    dev.writeMsr(0x6e0, 1n);
    dev.poll(clock.ns);
    expect(dev.pendingVector()).toBe(0x46);
    dev.acknowledge();
    dev.write(R.EOI, 4, 0, 0);
    dev.writeMsr(0x6e0, 20_000n);
    dev.writeMsr(0x6e0, 0n);
    clock.ns = 1e9;
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(dev.pendingVector()).toBe(-1);
    dev.writeMsr(0x6e0, 3_000_000_000n);
    expect(dev.poll(clock.ns)).toBe(500_000_000);
  });

  it("once the TSC has reached the deadline the MSR reads 0 and the vector is pending, polled or not", () => {
    const { dev, clock, wrReg } = deadline();
    wrReg(R.LVT_TIMER, 0x40049);
    dev.writeMsr(0x6e0, 10n);
    clock.ns = 4; // TSC 8
    expect(dev.readMsr(0x6e0)).toBe(10n);
    clock.ns = 5; // TSC 10: no poll yet
    expect(dev.readMsr(0x6e0)).toBe(0n);
    expect(dev.pendingVector()).toBe(0x49);
    dev.acknowledge();
    dev.poll(clock.ns);
    expect(dev.pendingVector()).toBe(-1);
  });

  it("masked, the deadline still disarms but raises nothing", () => {
    const { dev, clock, wrReg } = deadline();
    wrReg(R.LVT_TIMER, 0x50047);
    dev.writeMsr(0x6e0, 100n);
    clock.ns = 1000;
    dev.poll(clock.ns);
    expect(dev.pendingVector()).toBe(-1);
    expect(dev.readMsr(0x6e0)).toBe(0n);
  });

  it("the initial-count register is ignored in TSC-deadline mode and the current count reads 0", () => {
    const { dev, clock, rdReg, wrReg } = deadline();
    wrReg(R.LVT_TIMER, 0x40040);
    wrReg(R.TIMER_DIVIDE, 0xb);
    wrReg(R.TIMER_INITIAL, 1000);
    expect(rdReg(R.TIMER_INITIAL)).toBe(0);
    expect(rdReg(R.TIMER_CURRENT)).toBe(0);
    clock.ns = 5000;
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(dev.pendingVector()).toBe(-1);
  });

  it("switching into or out of TSC-deadline mode disarms the timer of either kind", () => {
    const { dev, clock, rdReg, wrReg } = deadline();
    wrReg(R.LVT_TIMER, 0x40);
    wrReg(R.TIMER_DIVIDE, 0xb);
    wrReg(R.TIMER_INITIAL, 1000);
    clock.ns = 100;
    wrReg(R.LVT_TIMER, 0x40040);
    expect(rdReg(R.TIMER_INITIAL)).toBe(0);
    dev.writeMsr(0x6e0, 10_000n);
    wrReg(R.LVT_TIMER, 0x50040); // masking alone keeps it armed
    expect(dev.readMsr(0x6e0)).toBe(10_000n);
    wrReg(R.LVT_TIMER, 0x40);
    wrReg(R.LVT_TIMER, 0x40040);
    expect(dev.readMsr(0x6e0)).toBe(0n);
    clock.ns = 1e6;
    expect(dev.poll(clock.ns)).toBeUndefined();
    expect(dev.pendingVector()).toBe(-1);
  });

  it("works the same through the x2APIC LVT timer MSR, and INIT disarms it", () => {
    const { dev, clock, wr } = x2apic();
    wr(0x80f, 0x1ff);
    wr(0x832, 0x40048);
    wr(0x6e0, 4000n);
    wr(0x838, 5); // ignored
    expect(dev.readMsr(0x838)).toBe(0n);
    dev.initReset();
    clock.ns = 1e6;
    dev.poll(clock.ns);
    expect(dev.readMsr(0x6e0)).toBe(0n);
    expect(dev.pendingVector()).toBe(-1);
  });
});

describe("x2APIC IPIs on the APIC bus", () => {
  function machine(cpus: number) {
    const pc = new PcInterrupts({ cpus });
    const clock = new FakeClock();
    for (const d of pc.devices) d.attach?.({ clock, requestStop: () => {} });
    const signals: [number, string, number][] = [];
    pc.onCpuSignal = (cpu, kind, vector) => signals.push([cpu, kind, vector]);
    for (const a of pc.lapics) {
      a.setX2apic(true);
      expect(a.writeMsr(0x80f, 0x1ffn)).toBe(true);
    }
    const icr = (from: number, dest: number, low: number) =>
      pc.lapics[from]!.writeMsr(0x830, (BigInt(dest) << 32n) | BigInt(low));
    const pending = () => pc.lapics.map((a) => a.pendingVector());
    return { pc, icr, pending, signals };
  }

  it("physical: the 32-bit destination is the x2APIC ID; 0xFFFFFFFF is the broadcast", () => {
    const { icr, pending } = machine(3);
    expect(icr(0, 2, 0x61)).toBe(true);
    expect(pending()).toEqual([-1, -1, 0x61]);
    // 0x102 is not CPU 2: all 32 bits count
    expect(icr(0, 0x102, 0x62)).toBe(true);
    expect(pending()).toEqual([-1, -1, 0x61]);
    expect(icr(1, 0xffffffff, 0x63)).toBe(true);
    expect(pending()).toEqual([0x63, 0x63, 0x63]);
  });

  it("logical: cluster in 31:16 and a mask of 16 CPUs in 15:0", () => {
    const { icr, pending } = machine(4);
    expect(icr(0, 0x0000_000a, (1 << 11) | 0x71)).toBe(true); // cluster 0, CPUs 1 and 3
    expect(pending()).toEqual([-1, 0x71, -1, 0x71]);
    expect(icr(0, 0x0001_0001, (1 << 11) | 0x72)).toBe(true); // cluster 1: nobody here
    expect(pending()).toEqual([-1, 0x71, -1, 0x71]);
  });

  it("shorthands, INIT and SIPI as in xAPIC mode; INIT leaves the target in x2APIC mode", () => {
    const { pc, icr, pending, signals } = machine(2);
    expect(icr(0, 0, (3 << 18) | 0x55)).toBe(true); // all excluding self
    expect(pending()).toEqual([-1, 0x55]);
    expect(icr(0, 1, (5 << 8) | (1 << 14))).toBe(true); // INIT
    expect(icr(0, 1, (6 << 8) | 0x09)).toBe(true); // SIPI, page 9
    expect(signals).toEqual([
      [1, "init", 0],
      [1, "sipi", 9],
    ]);
    expect(pc.lapics[1]!.x2apic).toBe(true);
    expect(pc.lapics[1]!.pendingVector()).toBe(-1);
  });

  it("the I/O APIC's 8-bit destinations reach x2APIC-mode APICs (0xFF as the broadcast)", () => {
    const { pc, pending } = machine(2);
    pc.ioapic.write(0, 4, 0x11 + 2 * 5, 0);
    pc.ioapic.write(0x10, 4, 1 << 24, 0);
    pc.ioapic.write(0, 4, 0x10 + 2 * 5, 0);
    pc.ioapic.write(0x10, 4, 0x35, 0);
    pc.setIrq(5, true);
    expect(pending()).toEqual([-1, 0x35]);
    pc.ioapic.write(0, 4, 0x11 + 2 * 6, 0);
    pc.ioapic.write(0x10, 4, 0xff << 24, 0);
    pc.ioapic.write(0, 4, 0x10 + 2 * 6, 0);
    pc.ioapic.write(0x10, 4, 0x36, 0);
    pc.setIrq(6, true);
    expect(pending()).toEqual([0x36, 0x36]);
  });

  it("each CPU's view hands RDMSR/WRMSR to its own APIC", () => {
    const pc = new PcInterrupts({ cpus: 2 });
    const v1 = pc.forCpu(1).apicMsrs;
    v1.setX2apic(true);
    expect(v1.readMsr(0x802)).toBe(1n);
    expect(pc.forCpu(0).apicMsrs.readMsr(0x802)).toBeUndefined();
  });
});
