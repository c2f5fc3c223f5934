// INIT, SIPI and the wait-for-SIPI activity state in VMX non-root operation (SDM 25.2, 26.3.1.5,
// 26.6.2): INIT exits (reason 3), SIPI exits from wait-for-SIPI only (reason 4, qualification =
// vector) and is discarded elsewhere, and a processor waiting for SIPI runs nothing and takes
// neither NMIs, interrupts nor the preemption timer.
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import {
  adjustControls,
  EXIT_CAPS,
  ExitCtl,
  F,
  HOST_TIMER_VECTOR,
  Msr,
  PIN_CAPS,
  Pin,
  Proc,
} from "../../lib/vmx/index.js";
import { rigWith } from "./setup.js";

const LOOP = 0x1000; // jmp $
const HALT = 0x1100; // hlt

function machine(opts: { pin?: number; ackOnExit?: boolean } = {}) {
  const r = rigWith(new Interpreter(), { realMode: true, proc: Proc.HLT, pin: opts.pin ?? 0 });
  const ram = r.mem.allocate(1 << 20);
  r.ept.map(0, ram.hpa, 1 << 20);
  ram.bytes.set([0xeb, 0xfe], LOOP);
  ram.bytes.set([0xf4], HALT);
  if (opts.ackOnExit) {
    r.lp.vmwrite(
      F.VM_EXIT_CONTROLS,
      adjustControls(ExitCtl.HOST_ADDR_SPACE_SIZE | ExitCtl.ACK_INTR_ON_EXIT, EXIT_CAPS),
    );
  }
  r.lp.vmwrite(F.GUEST_RIP, HALT);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  return { ...r, ram };
}

const reason = (lp: { vmreadNumber(f: number): number }) => lp.vmreadNumber(F.VM_EXIT_REASON);

describe("IA32_VMX_MISC", () => {
  it("reports the HLT, shutdown and wait-for-SIPI activity states (bits 6, 7, 8)", () => {
    const r = machine();
    const misc = r.lp.readMsr(Msr.VMX_MISC)!;
    expect((misc >> 6n) & 7n).toBe(7n);
  });
});

describe("VM entry in the wait-for-SIPI activity state", () => {
  it("enters, runs nothing, and with nothing pending returns the host's interrupt at once (never throws)", () => {
    const r = machine({ pin: Pin.EXTERNAL_INTERRUPT, ackOnExit: true });
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    expect(r.lp.vmlaunch()).toBe(1);
    expect(r.lp.vmreadNumber(F.VM_EXIT_INTR_INFO)).toBe((0x80000000 | HOST_TIMER_VECTOR) >>> 0);
    expect(r.cpu.retired).toBe(0);
    expect(r.lp.vmreadNumber(F.GUEST_ACTIVITY_STATE)).toBe(3);
    expect(r.lp.vmreadNumber(F.GUEST_RIP)).toBe(HALT);
  });

  it("without external-interrupt exiting it still returns to the host instead of throwing", () => {
    const r = machine();
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    expect(r.lp.vmlaunch()).toBe(1);
    expect(r.cpu.retired).toBe(0);
  });

  it("a pending SIPI exits with reason 4 and the vector as qualification; the state stays wait-for-SIPI", () => {
    const r = machine();
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    r.lp.postSipi(0x9a);
    expect(r.lp.vmlaunch()).toBe(4);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x9an);
    expect(r.lp.vmreadNumber(F.VM_EXIT_INSTRUCTION_LEN)).toBe(0);
    expect(r.lp.vmreadNumber(F.GUEST_ACTIVITY_STATE)).toBe(3);
    expect(r.lp.sipiVector).toBe(-1);
    expect(r.cpu.retired).toBe(0);
  });

  it("the host starts the guest at the SIPI vector with VMWRITE: it runs there", () => {
    const r = machine();
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    r.lp.postSipi(0x01); // 0100:0000 = 0x1000: jmp $ ... replaced by hlt below
    r.ram.bytes.set([0x90, 0xf4], 0x1000);
    expect(r.lp.vmlaunch()).toBe(4);
    const v = Number(r.lp.vmread(F.EXIT_QUALIFICATION));
    r.lp.vmwrite(F.GUEST_CS_SELECTOR, v << 8);
    r.lp.vmwrite(F.GUEST_CS_BASE, v << 12);
    r.lp.vmwrite(F.GUEST_RIP, 0);
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 0);
    expect(r.lp.vmresume()).toBe(12);
    expect(r.lp.vmreadNumber(F.GUEST_RIP)).toBe(1);
    expect(r.cpu.retired).toBe(1);
  });

  it("INIT is blocked: dropped, no exit of its own", () => {
    const r = machine();
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    r.lp.postInit();
    expect(r.lp.vmlaunch()).toBe(1);
    expect(r.lp.initPending).toBe(false);
  });

  it("NMIs are blocked (they stay pending) with and without NMI exiting", () => {
    for (const pin of [0, Pin.NMI_EXITING]) {
      const r = machine({ pin });
      r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
      r.lp.nmiPending = true;
      expect(r.lp.vmlaunch()).toBe(1);
      expect(r.lp.nmiPending).toBe(true);
      expect(r.cpu.eventsDelivered).toBe(0);
    }
  });

  it("external interrupts are blocked: not acknowledged, no exit with their vector", () => {
    const r = machine({ pin: Pin.EXTERNAL_INTERRUPT, ackOnExit: true });
    let acknowledged = 0;
    r.lp.interrupts = {
      hasInterrupt: () => true,
      acknowledge: () => {
        acknowledged++;
        return 0x30;
      },
    };
    r.lp.vmwrite(F.GUEST_RFLAGS, 0x202);
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    expect(r.lp.vmlaunch()).toBe(1);
    expect(acknowledged).toBe(0);
    expect(r.lp.vmreadNumber(F.VM_EXIT_INTR_INFO) & 0xff).toBe(HOST_TIMER_VECTOR);
  });

  it("the preemption timer does not exit in wait-for-SIPI", () => {
    const r = machine({ pin: Pin.PREEMPTION_TIMER });
    r.lp.vmwrite(F.PIN_BASED_VM_EXEC_CONTROL, adjustControls(Pin.PREEMPTION_TIMER, PIN_CAPS));
    r.lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 0);
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    expect(r.lp.vmlaunch()).toBe(1);
    // the same entry active: the timer (value 0) exits at once
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 0);
    expect(r.lp.vmresume()).toBe(52);
  });
});

describe("INIT in VMX non-root operation", () => {
  it("exits with reason 3 before any instruction, leaving the guest state as it was", () => {
    const r = machine();
    r.lp.vmwrite(F.GUEST_RIP, LOOP);
    r.lp.postInit();
    expect(r.lp.vmlaunch()).toBe(3);
    expect(reason(r.lp)).toBe(3);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0n);
    expect(r.lp.vmreadNumber(F.GUEST_RIP)).toBe(LOOP);
    expect(r.lp.vmreadNumber(F.GUEST_ACTIVITY_STATE)).toBe(0);
    expect(r.lp.initPending).toBe(false);
    expect(r.cpu.retired).toBe(0);
  });

  it("wakes a halted processor and ends the shutdown state (INIT ranks above both)", () => {
    const halted = machine();
    halted.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
    halted.lp.postInit();
    expect(halted.lp.vmlaunch()).toBe(3);
    expect(halted.lp.vmreadNumber(F.GUEST_ACTIVITY_STATE)).toBe(1);
    const down = machine();
    down.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 2);
    down.lp.postInit();
    expect(down.lp.vmlaunch()).toBe(3);
  });

  it("comes before a pending NMI (NMI exiting) and the preemption timer", () => {
    const r = machine({ pin: Pin.NMI_EXITING | Pin.PREEMPTION_TIMER });
    r.lp.vmwrite(
      F.PIN_BASED_VM_EXEC_CONTROL,
      adjustControls(Pin.NMI_EXITING | Pin.PREEMPTION_TIMER, PIN_CAPS),
    );
    r.lp.vmwrite(F.VMX_PREEMPTION_TIMER_VALUE, 0);
    r.lp.nmiPending = true;
    r.lp.postInit();
    expect(r.lp.vmlaunch()).toBe(3);
    expect(r.lp.nmiPending).toBe(true);
  });
});

describe("SIPI outside wait-for-SIPI", () => {
  it("is discarded in the active state: no exit, and a later wait-for-SIPI does not see it", () => {
    const r = machine();
    r.lp.postSipi(0x10);
    expect(r.lp.vmlaunch()).toBe(12); // the guest ran to its HLT
    expect(r.lp.sipiVector).toBe(-1);
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    expect(r.lp.vmresume()).toBe(1);
  });

  it("is discarded in the HLT state", () => {
    const r = machine({ pin: Pin.EXTERNAL_INTERRUPT });
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 1);
    r.lp.hostTimerAt = 0; // the host's timer ends the halt
    r.lp.postSipi(0x10);
    expect(r.lp.vmlaunch()).toBe(1);
    expect(r.lp.sipiVector).toBe(-1);
  });

  it("INIT then SIPI while active: the INIT exit comes first and the SIPI waits for wait-for-SIPI", () => {
    const r = machine();
    r.lp.vmwrite(F.GUEST_RIP, LOOP);
    r.lp.postInit();
    r.lp.postSipi(0x20);
    expect(r.lp.vmlaunch()).toBe(3);
    expect(r.lp.sipiVector).toBe(0x20);
    // the host handles INIT: the processor waits for SIPI
    r.lp.vmwrite(F.GUEST_ACTIVITY_STATE, 3);
    expect(r.lp.vmresume()).toBe(4);
    expect(r.lp.vmread(F.EXIT_QUALIFICATION)).toBe(0x20n);
  });
});
