// PcInterrupts with several CPUs: one local APIC each behind the one 0xFEE00000 page, IPIs on the
// APIC bus (every delivery mode against every kind of destination), lowest-priority arbitration,
// INIT/SIPI/NMI reaching the CPU through onCpuSignal, the I/O APIC delivering to any CPU, the 8259's
// ExtINT on the BSP only, and snapshots of every APIC. Driven through the page as guests would.

import { describe, expect, it } from "vitest";
import {
  DeviceConfigError,
  type LapicPageState,
  type LocalApicState,
  PcInterrupts,
  LapicReg as R,
} from "../../lib/devices/index.js";
import { FakeClock } from "./helpers.js";

type Signal = [cpu: number, kind: string, vector: number];

function smp(cpus = 4) {
  const pc = new PcInterrupts({ cpus });
  const clock = new FakeClock();
  let pollRequests = 0;
  for (const d of pc.devices) {
    d.attach?.({
      clock,
      requestStop: () => {},
      requestPoll: () => {
        pollRequests++;
      },
    });
  }
  const signals: Signal[] = [];
  pc.onCpuSignal = (cpu, kind, vector) => signals.push([cpu, kind, vector]);
  /** a 32-bit access to the page by CPU `cpu`, as the machine routes it */
  const wr = (cpu: number, reg: number, v: number) => {
    pc.currentCpu = cpu;
    pc.lapicPage.write(reg, 4, v, 0);
  };
  const rd = (cpu: number, reg: number) => {
    pc.currentCpu = cpu;
    return pc.lapicPage.read(reg, 4, 0);
  };
  const ipi = (from: number, low: number, dest = 0) => {
    wr(from, R.ICR_HIGH, dest << 24);
    wr(from, R.ICR_LOW, low);
  };
  /** the vectors set in a CPU's IRR, read through its page */
  const irr = (cpu: number) => {
    const out: number[] = [];
    for (let w = 0; w < 8; w++) {
      const bits = rd(cpu, R.IRR + w * 0x10);
      for (let b = 0; b < 32; b++) if ((bits >>> b) & 1) out.push(w * 32 + b);
    }
    return out;
  };
  const redir = (pin: number, low: number, high = 0) => {
    pc.ioapic.write(0, 4, 0x11 + 2 * pin, 0);
    pc.ioapic.write(0x10, 4, high, 0);
    pc.ioapic.write(0, 4, 0x10 + 2 * pin, 0);
    pc.ioapic.write(0x10, 4, low, 0);
  };
  const all = Array.from({ length: cpus }, (_, i) => i);
  for (const i of all) wr(i, R.SVR, 0x1ff);
  return { pc, clock, signals, wr, rd, ipi, irr, redir, all, polls: () => pollRequests };
}

// ICR low bits
const LOGICAL = 1 << 11;
const ASSERT = 1 << 14;
const LEVEL = 1 << 15;
const SELF = 1 << 18;
const ALL_INCL = 2 << 18;
const ALL_EXCL = 3 << 18;
const mode = (m: number) => m << 8;

/** each destination an IPI from CPU 1 can name on a 4-CPU machine, and the CPUs it selects */
interface Dest {
  name: string;
  model: "flat" | "cluster";
  icr: number;
  dest: number;
  cpus: number[];
}
const DESTS: Dest[] = [
  { name: "physical APIC ID 2", model: "flat", icr: 0, dest: 2, cpus: [2] },
  { name: "physical APIC ID 1 (itself)", model: "flat", icr: 0, dest: 1, cpus: [1] },
  { name: "physical ID 9 (no such APIC)", model: "flat", icr: 0, dest: 9, cpus: [] },
  { name: "physical broadcast 0xFF", model: "flat", icr: 0, dest: 0xff, cpus: [0, 1, 2, 3] },
  { name: "logical flat 0b1010", model: "flat", icr: LOGICAL, dest: 0b1010, cpus: [1, 3] },
  { name: "logical flat 0b0100", model: "flat", icr: LOGICAL, dest: 0b0100, cpus: [2] },
  { name: "logical flat broadcast 0xFF", model: "flat", icr: LOGICAL, dest: 0xff, cpus: [0, 1, 2, 3] },
  // cluster model: CPU i is in cluster i>>1 with member bit 1<<(i&1)
  { name: "logical cluster 1, both members", model: "cluster", icr: LOGICAL, dest: 0x13, cpus: [2, 3] },
  { name: "logical cluster 0, member 1", model: "cluster", icr: LOGICAL, dest: 0x02, cpus: [1] },
  { name: "logical cluster 2 (empty)", model: "cluster", icr: LOGICAL, dest: 0x21, cpus: [] },
  { name: "logical cluster broadcast 0xFF", model: "cluster", icr: LOGICAL, dest: 0xff, cpus: [0, 1, 2, 3] },
  // with a shorthand the destination field (here CPU 2) is ignored
  { name: "shorthand self", model: "flat", icr: SELF, dest: 2, cpus: [1] },
  { name: "shorthand all including self", model: "flat", icr: ALL_INCL, dest: 2, cpus: [0, 1, 2, 3] },
  { name: "shorthand all excluding self", model: "flat", icr: ALL_EXCL, dest: 2, cpus: [0, 2, 3] },
];

const VECTOR = 0x41; // 65: of n tied CPUs lowest priority picks the (65 mod n)-th

function programLogical(s: ReturnType<typeof smp>, model: "flat" | "cluster") {
  for (const i of s.all) {
    if (model === "flat") {
      s.wr(i, R.DFR, 0xffffffff);
      s.wr(i, R.LDR, (1 << i) << 24);
    } else {
      s.wr(i, R.DFR, 0x0fffffff);
      s.wr(i, R.LDR, (((i >> 1) << 4) | (1 << (i & 1))) << 24);
    }
  }
}

describe("APIC bus: IPI delivery matrix (sender CPU 1 of 4)", () => {
  for (const d of DESTS) {
    const others = [0, 1, 2, 3].filter((c) => !d.cpus.includes(c));
    it(`fixed, edge and level, to ${d.name}`, () => {
      const s = smp();
      programLogical(s, d.model);
      s.ipi(1, d.icr | mode(0) | VECTOR, d.dest);
      s.ipi(1, d.icr | mode(0) | LEVEL | ASSERT | 0x62, d.dest);
      for (const c of d.cpus) {
        expect(s.irr(c), `CPU ${c}`).toEqual([VECTOR, 0x62]);
        expect(s.pc.lapics[c]!.tmr[0x62 >> 5]! >>> (0x62 & 31)).toBe(1);
        expect(s.pc.lapics[c]!.tmr[VECTOR >> 5]! & (1 << (VECTOR & 31))).toBe(0);
      }
      for (const c of others) expect(s.irr(c), `CPU ${c}`).toEqual([]);
      expect(s.rd(1, R.ICR_LOW) & 0x1000).toBe(0); // delivery status: idle
      expect(s.signals).toEqual([]);
    });

    it(`lowest priority to ${d.name}`, () => {
      const s = smp();
      programLogical(s, d.model);
      s.ipi(1, d.icr | mode(1) | VECTOR, d.dest);
      // KVM delivers a physical broadcast in lowest-priority mode to everyone, as fixed
      const physBroadcast = d.icr === 0 && d.dest === 0xff;
      const expected = physBroadcast ? d.cpus : d.cpus.length === 0 ? [] : [d.cpus[VECTOR % d.cpus.length]!];
      for (const c of [0, 1, 2, 3]) {
        expect(s.irr(c), `CPU ${c}`).toEqual(expected.includes(c) ? [VECTOR] : []);
      }
    });

    for (const [m, kind] of [
      [4, "nmi"],
      [6, "sipi"],
    ] as const) {
      it(`${kind} to ${d.name}`, () => {
        const s = smp();
        programLogical(s, d.model);
        s.ipi(1, d.icr | mode(m) | 0x9a, d.dest);
        expect(s.signals).toEqual(d.cpus.map((c) => [c, kind, kind === "sipi" ? 0x9a : 0]));
        for (const c of [0, 1, 2, 3]) expect(s.irr(c)).toEqual([]);
      });
    }

    it(`INIT (level assert) to ${d.name}: the targets' APICs reset, the others keep their state`, () => {
      const s = smp();
      programLogical(s, d.model);
      for (const c of s.all) s.wr(c, R.TPR, 0x20);
      s.ipi(1, d.icr | mode(5) | LEVEL | ASSERT, d.dest);
      expect(s.signals).toEqual(d.cpus.map((c) => [c, "init", 0]));
      for (const c of [0, 1, 2, 3]) {
        const reset = d.cpus.includes(c);
        expect(s.rd(c, R.SVR), `CPU ${c}`).toBe(reset ? 0xff : 0x1ff);
        expect(s.rd(c, R.TPR), `CPU ${c}`).toBe(reset ? 0 : 0x20);
        expect(s.rd(c, R.ID), `CPU ${c}`).toBe(c << 24);
      }
    });

    it(`INIT level de-assert, SMI and ExtINT to ${d.name} do nothing`, () => {
      const s = smp();
      programLogical(s, d.model);
      s.ipi(1, d.icr | mode(5) | LEVEL | 0x00, d.dest); // INIT de-assert (as P4/Xeon and KVM: ignored)
      s.ipi(1, d.icr | mode(2) | 0x50, d.dest); // SMI: no SMM
      s.ipi(1, d.icr | mode(7) | 0x51, d.dest); // ExtINT
      expect(s.signals).toEqual([]);
      for (const c of [0, 1, 2, 3]) {
        expect(s.irr(c)).toEqual([]);
        expect(s.rd(c, R.SVR)).toBe(0x1ff);
      }
    });
  }

  it("an edge-triggered INIT (level bit clear) is delivered, as KVM takes it", () => {
    const s = smp();
    s.ipi(0, mode(5), 3);
    expect(s.signals).toEqual([[3, "init", 0]]);
  });

  it("fixed and lowest-priority vectors below 16 are not sent and set the sender's ESR", () => {
    const s = smp();
    for (const m of [0, 1]) {
      s.ipi(0, mode(m) | 0x05, 1);
      s.wr(0, R.ESR, 0);
      expect(s.rd(0, R.ESR)).toBe(0x20); // send illegal vector
      expect(s.rd(1, R.ESR)).toBe(0);
      s.wr(1, R.ESR, 0);
      expect(s.rd(1, R.ESR)).toBe(0);
      expect(s.irr(1)).toEqual([]);
    }
    // a SIPI's vector is a page number, any 8 bits
    s.ipi(0, mode(6) | 0x01, 1);
    expect(s.signals).toEqual([[1, "sipi", 1]]);
  });

  it("software-disabled APICs take no fixed vector but still take NMI, INIT and SIPI; hardware-disabled ones nothing", () => {
    const s = smp();
    s.wr(2, R.SVR, 0xff);
    s.pc.lapics[3]!.hardwareEnabled = () => false;
    s.ipi(0, ALL_EXCL | mode(0) | 0x70);
    expect([s.irr(1), s.pc.lapics[2]!.pendingVector()]).toEqual([[0x70], -1]);
    expect(s.pc.lapics[3]!.irr.every((w) => w === 0)).toBe(true);
    s.ipi(0, ALL_EXCL | mode(4));
    s.ipi(0, ALL_EXCL | mode(6) | 0x10);
    expect(s.signals).toEqual([
      [1, "nmi", 0],
      [2, "nmi", 0],
      [1, "sipi", 0x10],
      [2, "sipi", 0x10],
    ]);
  });

  it("a level-triggered fixed IPI's EOI on the target is broadcast to the I/O APIC", () => {
    const s = smp();
    const eois: number[] = [];
    const ioapicEoi = s.pc.ioapic.eoi.bind(s.pc.ioapic);
    s.pc.ioapic.eoi = (v) => {
      eois.push(v);
      ioapicEoi(v);
    };
    s.ipi(0, LEVEL | ASSERT | 0x66, 2);
    expect(s.pc.forCpu(2).acknowledge()).toBe(0x66);
    s.wr(2, R.EOI, 0);
    expect(eois).toEqual([0x66]);
  });
});

describe("APIC bus: lowest-priority arbitration", () => {
  it("goes to the APIC with the lowest processor priority; ties as KVM's vector hashing breaks them", () => {
    const s = smp();
    for (const [c, tpr] of [
      [0, 0x30],
      [1, 0x10],
      [2, 0x10],
      [3, 0x20],
    ] as const)
      s.wr(c, R.TPR, tpr);
    s.ipi(3, ALL_INCL | mode(1) | 0x50); // 0x50 mod 2 = 0: CPU 1
    s.ipi(3, ALL_INCL | mode(1) | 0x51); // 0x51 mod 2 = 1: CPU 2
    expect([s.irr(0), s.irr(1), s.irr(2), s.irr(3)]).toEqual([[], [0x50], [0x51], []]);
    // CPU 1 takes 0x50 (in service: PPR 0x50); CPU 2 alone has the lowest priority now
    expect(s.pc.forCpu(1).acknowledge()).toBe(0x50);
    expect(s.rd(1, R.PPR)).toBe(0x50);
    s.ipi(3, ALL_INCL | mode(1) | 0x60);
    s.ipi(3, ALL_INCL | mode(1) | 0x61);
    expect(s.irr(2)).toEqual([0x51, 0x60, 0x61]);
    // a software-disabled APIC takes no part
    s.wr(2, R.SVR, 0xff);
    s.ipi(3, ALL_INCL | mode(1) | 0x70);
    expect(s.irr(3)).toEqual([0x70]);
    expect(s.pc.bus.lowestPriority([2], 0x70)).toBe(-1);
  });

  it("with everything equal the (vector mod n)-th CPU of the set takes it, so vectors spread over the CPUs", () => {
    const s = smp();
    for (let v = 0x40; v < 0x48; v++) s.ipi(0, ALL_INCL | mode(1) | v);
    expect([s.irr(0), s.irr(1), s.irr(2), s.irr(3)]).toEqual([
      [0x40, 0x44],
      [0x41, 0x45],
      [0x42, 0x46],
      [0x43, 0x47],
    ]);
  });
});

describe("INIT and SIPI", () => {
  it("INIT resets the target's APIC to its power-up values but keeps the APIC ID software wrote", () => {
    const s = smp();
    const c = 2;
    s.wr(c, R.ID, 0x07000000);
    s.wr(c, R.TPR, 0x20);
    s.wr(c, R.LDR, 0x04000000);
    s.wr(c, R.DFR, 0x0fffffff);
    s.wr(c, R.LVT_LINT0, 0x700);
    s.wr(c, R.LVT_TIMER, 0x200ec);
    s.wr(c, R.TIMER_DIVIDE, 0xb);
    s.wr(c, R.TIMER_INITIAL, 1000);
    s.wr(c, R.ICR_HIGH, 0x01000000);
    s.ipi(0, 0x55, 7); // to the ID CPU 2 now has
    expect(s.pc.forCpu(c).acknowledge()).toBe(0x55);
    s.ipi(0, 0x56, 7);
    s.ipi(0, LEVEL | ASSERT | mode(5), 7);
    expect(s.signals).toEqual([[c, "init", 0]]);
    expect(s.rd(c, R.ID)).toBe(0x07000000);
    const resetValues: [number, number][] = [
      [R.TPR, 0],
      [R.PPR, 0],
      [R.LDR, 0],
      [R.DFR, 0xffffffff],
      [R.SVR, 0xff],
      [R.ESR, 0],
      [R.ICR_LOW, 0],
      [R.ICR_HIGH, 0],
      [R.TIMER_INITIAL, 0],
      [R.TIMER_CURRENT, 0],
      [R.TIMER_DIVIDE, 0],
      // an AP: every LVT masked, LINT0 included
      [R.LVT_TIMER, 0x10000],
      [R.LVT_THERMAL, 0x10000],
      [R.LVT_PERF, 0x10000],
      [R.LVT_LINT0, 0x10000],
      [R.LVT_LINT1, 0x10000],
      [R.LVT_ERROR, 0x10000],
    ];
    for (const [reg, v] of resetValues) expect(s.rd(c, reg), `register 0x${reg.toString(16)}`).toBe(v);
    for (let w = 0; w < 8; w++) {
      for (const bank of [R.ISR, R.TMR, R.IRR]) expect(s.rd(c, bank + w * 0x10)).toBe(0);
    }
    s.clock.advance(10_000);
    expect(s.pc.lapicPage.poll(s.clock.ns)).toBeUndefined(); // the timer stopped
    // a power-up RESET puts the ID back to the CPU index
    s.pc.lapicPage.reset();
    expect(s.rd(c, R.ID)).toBe(c << 24);
  });

  it("INIT to the BSP turns its LINT0 back to ExtINT (KVM: on the BSP only, at RESET and INIT)", () => {
    const s = smp(2);
    s.wr(0, R.LVT_LINT0, 0x10700);
    s.wr(1, R.LVT_LINT0, 0x700);
    s.ipi(1, ALL_INCL | LEVEL | ASSERT | mode(5));
    expect(s.rd(0, R.LVT_LINT0)).toBe(0x700);
    expect(s.rd(1, R.LVT_LINT0)).toBe(0x10000);
    expect(s.signals).toEqual([
      [0, "init", 0],
      [1, "init", 0],
    ]);
  });

  it("the INIT-SIPI-SIPI sequence an OS sends an AP: INIT, then two SIPIs with the start page", () => {
    const s = smp();
    s.ipi(0, LEVEL | ASSERT | mode(5), 3);
    s.ipi(0, LEVEL | mode(5), 3); // de-assert: nothing
    s.ipi(0, mode(6) | 0x9f, 3);
    s.ipi(0, mode(6) | 0x9f, 3);
    expect(s.signals).toEqual([
      [3, "init", 0],
      [3, "sipi", 0x9f],
      [3, "sipi", 0x9f],
    ]);
    // the MP-spec broadcast form: all excluding self
    s.signals.length = 0;
    s.ipi(0, ALL_EXCL | mode(6) | 0x08);
    expect(s.signals).toEqual([
      [1, "sipi", 8],
      [2, "sipi", 8],
      [3, "sipi", 8],
    ]);
  });

  it("without onCpuSignal, NMI/INIT/SIPI still reset or go nowhere without throwing", () => {
    const s = smp(2);
    s.pc.onCpuSignal = undefined;
    s.wr(1, R.TPR, 0x30);
    s.ipi(0, mode(4), 1);
    s.ipi(0, mode(6) | 0x10, 1);
    s.ipi(0, LEVEL | ASSERT | mode(5), 1);
    expect(s.rd(1, R.TPR)).toBe(0);
  });
});

describe("I/O APIC on an SMP machine", () => {
  it("an entry addressed to CPU 1 reaches CPU 1 only; its EOI from CPU 1 clears Remote IRR", () => {
    const s = smp();
    s.pc.i8259.write(1, 1, 0xff, 0); // 8259 all masked
    s.redir(4, 0x8000 | 0x44, 1 << 24);
    s.pc.setIrq(4, true);
    expect(s.all.map((c) => s.pc.forCpu(c).hasInterrupt())).toEqual([false, true, false, false]);
    expect(s.pc.hasInterrupt()).toBe(false); // the class's own methods are CPU 0's
    expect(s.pc.forCpu(1).acknowledge()).toBe(0x44);
    expect(s.pc.ioapic.entry(4)[0] & 0x4000).toBe(0x4000);
    s.pc.setIrq(4, false);
    s.wr(1, R.EOI, 0);
    expect(s.pc.ioapic.entry(4)[0] & 0x4000).toBe(0);
  });

  it("logical destinations: fixed to every selected CPU, lowest priority to one", () => {
    const s = smp();
    programLogical(s, "flat");
    s.redir(5, 0x800 | 0x45, 0x0c << 24);
    s.pc.setIrq(5, true);
    expect([s.irr(0), s.irr(1), s.irr(2), s.irr(3)]).toEqual([[], [], [0x45], [0x45]]);
    s.redir(6, 0x800 | 0x100 | 0x47, 0x0e << 24); // lowest priority among CPUs 1-3: 0x47 mod 3 = 2
    s.pc.setIrq(6, true);
    expect([s.irr(0), s.irr(1), s.irr(2), s.irr(3)]).toEqual([[], [], [0x45], [0x45, 0x47]]);
  });

  it("NMI and INIT entries reach the CPU through onCpuSignal", () => {
    const s = smp();
    s.redir(7, 0x400, 2 << 24); // NMI to CPU 2
    s.redir(9, 0x500, 3 << 24); // INIT to CPU 3
    s.pc.setIrq(7, true);
    s.pc.setIrq(9, true);
    expect(s.signals).toEqual([
      [2, "nmi", 0],
      [3, "init", 0],
    ]);
    expect(s.rd(3, R.SVR)).toBe(0xff);
  });
});

describe("the 8259's ExtINT", () => {
  it("reaches only the BSP after reset (APs' LINT0 masked); an AP that programs LINT0 ExtINT sees it too", () => {
    const s = smp();
    s.pc.i8259.write(0, 1, 0x11, 0);
    s.pc.i8259.write(1, 1, 0x20, 0);
    s.pc.i8259.write(1, 1, 0x04, 0);
    s.pc.i8259.write(1, 1, 0x01, 0);
    s.pc.i8259.write(1, 1, 0x00, 0);
    s.pc.setIrq(3, true);
    expect(s.all.map((c) => s.pc.forCpu(c).hasInterrupt())).toEqual([true, false, false, false]);
    expect(s.rd(1, R.LVT_LINT0)).toBe(0x10000);
    s.wr(1, R.LVT_LINT0, 0x700);
    expect(s.pc.forCpu(1).hasInterrupt()).toBe(true);
    expect(s.pc.forCpu(1).acknowledge()).toBe(0x23);
    expect(s.pc.forCpu(0).hasInterrupt()).toBe(false); // taken by CPU 1
  });

  it("an I/O APIC pin 0 ExtINT entry opens the wire only to the CPUs its destination selects", () => {
    const s = smp();
    s.pc.i8259.write(0, 1, 0x11, 0);
    s.pc.i8259.write(1, 1, 0x20, 0);
    s.pc.i8259.write(1, 1, 0x04, 0);
    s.pc.i8259.write(1, 1, 0x01, 0);
    s.pc.i8259.write(1, 1, 0x00, 0);
    s.wr(0, R.LVT_LINT0, 0x10700);
    s.pc.setIrq(1, true);
    expect(s.all.map((c) => s.pc.forCpu(c).hasInterrupt())).toEqual([false, false, false, false]);
    s.redir(0, 0x700, 2 << 24);
    expect(s.all.map((c) => s.pc.forCpu(c).hasInterrupt())).toEqual([false, false, true, false]);
    expect(s.pc.forCpu(2).acknowledge()).toBe(0x21);
  });
});

describe("the LAPIC page and the per-CPU views", () => {
  it("the one device at 0xFEE00000 serves the current CPU's APIC", () => {
    const s = smp();
    expect(s.pc.devices.map((d) => d.name)).toEqual(["i8259", "ioapic", "lapic"]);
    expect(s.pc.devices[2]!.ranges).toEqual([{ space: "mmio", base: 0xfee00000, length: 0x1000 }]);
    expect(s.all.map((c) => s.rd(c, R.ID))).toEqual([0, 0x01000000, 0x02000000, 0x03000000]);
    s.wr(2, R.TPR, 0x40);
    expect(s.pc.lapics.map((a) => a.tpr)).toEqual([0, 0, 0x40, 0]);
    expect(s.pc.forCpu(2).taskPriority.get()).toBe(0x40);
    s.pc.forCpu(3).taskPriority.set(0x1234);
    expect(s.rd(3, R.TPR)).toBe(0x34);
    expect(s.pc.currentCpu).toBe(3);
    expect(() => {
      s.pc.currentCpu = 4;
    }).toThrow(DeviceConfigError);
    expect(() => s.pc.forCpu(4)).toThrow(/not a CPU 0-3/);
    expect(() => new PcInterrupts({ cpus: 0 })).toThrow(DeviceConfigError);
    expect(() => new PcInterrupts({ cpus: 256 })).toThrow(DeviceConfigError);
  });

  it("every APIC's timer is polled, whichever CPU is current; the page returns the nearest deadline", () => {
    const s = smp();
    s.wr(1, R.TIMER_DIVIDE, 0xb);
    s.wr(1, R.LVT_TIMER, 0xe1);
    s.wr(1, R.TIMER_INITIAL, 5000);
    s.wr(3, R.TIMER_DIVIDE, 0xb);
    s.wr(3, R.LVT_TIMER, 0xe3);
    s.wr(3, R.TIMER_INITIAL, 2000);
    expect(s.polls()).toBeGreaterThan(0);
    s.pc.currentCpu = 0;
    expect(s.pc.lapicPage.poll(s.clock.ns)).toBe(2000);
    s.clock.advance(2000);
    expect(s.pc.lapicPage.poll(s.clock.ns)).toBe(3000);
    expect(s.pc.forCpu(3).acknowledge()).toBe(0xe3);
    s.clock.advance(3000);
    expect(s.pc.lapicPage.poll(s.clock.ns)).toBeUndefined();
    expect(s.pc.forCpu(1).acknowledge()).toBe(0xe1);
    expect(s.pc.forCpu(0).hasInterrupt()).toBe(false);
  });

  it("one CPU: the same devices and behaviour as before SMP", () => {
    const pc = new PcInterrupts();
    expect(pc.cpus).toBe(1);
    expect(pc.lapics).toEqual([pc.lapic]);
    expect(pc.forCpu(0)).toBeDefined();
    expect(pc.currentCpu).toBe(0);
    expect(pc.devices.map((d) => d.name)).toEqual(["i8259", "ioapic", "lapic"]);
    const signals: Signal[] = [];
    pc.onCpuSignal = (cpu, kind, vector) => signals.push([cpu, kind, vector]);
    pc.lapicPage.write(R.SVR, 4, 0x1ff, 0);
    pc.lapicPage.write(R.ICR_LOW, 4, ALL_EXCL | 0x40, 0); // nobody else
    pc.lapicPage.write(R.ICR_LOW, 4, SELF | 0x41, 0);
    expect(pc.acknowledge()).toBe(0x41);
    expect(pc.forCpu(0).hasInterrupt()).toBe(false);
    expect(signals).toEqual([]);
  });
});

describe("snapshots of every local APIC", () => {
  it("the page saves N APIC states and restores them onto a machine with N CPUs", () => {
    const s = smp(3);
    s.wr(1, R.TPR, 0x20);
    s.wr(2, R.ID, 0x09000000);
    s.ipi(0, 0x77, 1);
    s.wr(2, R.TIMER_INITIAL, 500);
    const state = JSON.parse(JSON.stringify(s.pc.lapicPage.snapshot())) as LapicPageState;
    expect(state.lapics).toHaveLength(3);
    const t = smp(3);
    t.pc.lapicPage.restore(state);
    expect(t.rd(1, R.TPR)).toBe(0x20);
    expect(t.irr(1)).toEqual([0x77]);
    expect(t.rd(2, R.ID)).toBe(0x09000000);
    expect(t.rd(2, R.TIMER_INITIAL)).toBe(500);
    expect(t.rd(0, R.TPR)).toBe(0);
    expect(() => smp(2).pc.lapicPage.restore(state)).toThrow(/3 local APICs, this machine 2/);
  });

  it("a 1-CPU machine restores a single APIC's state (snapshots from before SMP)", () => {
    const old = new PcInterrupts();
    old.lapic.tpr = 0x30;
    const single: LocalApicState = old.lapic.snapshot();
    const pc = new PcInterrupts();
    pc.lapicPage.restore(single);
    expect(pc.lapic.tpr).toBe(0x30);
    expect(() => new PcInterrupts({ cpus: 2 }).lapicPage.restore(single)).toThrow(DeviceConfigError);
  });
});
