// The "enable RDTSCP" secondary processor-based control (bit 3) in VMX non-root operation (SDM Vol.
// 3C 26.3, 25.1.3): while it is 0, RDTSCP and RDPID are #UD, ahead of any other exception and of
// RDTSC exiting; while it is 1 RDTSCP runs (or exits with reason 51 under RDTSC exiting) and RDPID
// runs. The soft backend's VMCS sets it, so its guests keep both (lib/vmm/backends/soft/vmcs-setup.ts).
import { describe, expect, it } from "vitest";
import { Interpreter } from "../../lib/cpu/index.js";
import { createMachine } from "../../lib/vmm/machine.js";
import { F, Proc, Proc2 } from "../../lib/vmx/index.js";
import { type RigOptions, rigWith } from "../vmx/setup.js";

const RAM = 1 << 20;
const RDTSCP_EXIT = 51;
const HLT_EXIT = 12;
const TSC_AUX = 0xc0000103;
/** VM-exit interruption information of a #UD (valid, hardware exception, vector 6) */
const UD_INFO = 0x80000306n;
const AT = 0x1000n;

/** real-mode guest (unrestricted guest) running `code` at 0x1000, #UD in the exception bitmap */
function guest(code: number[], opts: RigOptions = {}) {
  const cpu = new Interpreter();
  const r = rigWith(cpu, { realMode: true, ...opts });
  const ram = r.mem.allocate(RAM);
  r.ept.map(0, ram.hpa, RAM);
  ram.bytes.set(code, 0x1000);
  r.lp.vmwrite(F.GUEST_RIP, 0x1000);
  r.lp.vmwrite(F.GUEST_RSP, 0x8000);
  r.lp.vmwrite(F.EXCEPTION_BITMAP, 1 << 6);
  cpu.setMsr(TSC_AUX, 0x55n);
  return r;
}

const RDTSCP = [0x0f, 0x01, 0xf9, 0xf4];
const RDPID_EAX = [0xf3, 0x0f, 0xc7, 0xf8, 0xf4];

describe('"enable RDTSCP" in VMX non-root operation', () => {
  it("0: RDTSCP is #UD, also with RDTSC exiting (the #UD comes first)", () => {
    for (const proc of [Proc.HLT, Proc.HLT | Proc.RDTSC]) {
      const g = guest(RDTSCP, { proc });
      expect(g.lp.vmlaunch()).toBe(0);
      expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(UD_INFO);
      expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT);
    }
  });

  it("0: RDPID is #UD", () => {
    const g = guest(RDPID_EAX);
    expect(g.lp.vmlaunch()).toBe(0);
    expect(g.lp.vmread(F.VM_EXIT_INTR_INFO)).toBe(UD_INFO);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT);
  });

  it("1: RDTSCP runs and returns IA32_TSC_AUX in ECX", () => {
    const g = guest(RDTSCP, { proc2: Proc2.RDTSCP });
    expect(g.lp.vmlaunch()).toBe(HLT_EXIT);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT + 3n);
    expect(g.cpu.getGpr(1)).toBe(0x55n);
  });

  it("1 with RDTSC exiting: RDTSCP exits (reason 51) at the instruction", () => {
    const g = guest(RDTSCP, { proc: Proc.HLT | Proc.RDTSC, proc2: Proc2.RDTSCP });
    expect(g.lp.vmlaunch()).toBe(RDTSCP_EXIT);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT);
    expect(g.lp.vmread(F.VM_EXIT_INSTRUCTION_LEN)).toBe(3n);
  });

  it("1: RDPID runs (no exit, whatever RDTSC exiting says)", () => {
    const g = guest(RDPID_EAX, { proc: Proc.HLT | Proc.RDTSC, proc2: Proc2.RDTSCP });
    expect(g.lp.vmlaunch()).toBe(HLT_EXIT);
    expect(g.lp.vmread(F.GUEST_RIP)).toBe(AT + 4n);
    expect(g.cpu.getGpr(0)).toBe(0x55n);
  });
});

describe("the soft backend's guests keep RDTSCP and RDPID", () => {
  it("a real-mode guest runs both to its HLT, each reading IA32_TSC_AUX", async () => {
    // mov dword [0x500], -1 (twice, at 0x500 and 0x504); rdtscp; mov [0x500], ecx; rdpid eax;
    // mov [0x504], eax; hlt
    const code = [
      0x66, 0xc7, 0x06, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0x66, 0xc7, 0x06, 0x04, 0x05, 0xff, 0xff, 0xff,
      0xff, 0x0f, 0x01, 0xf9, 0x66, 0x89, 0x0e, 0x00, 0x05, 0xf3, 0x0f, 0xc7, 0xf8, 0x66, 0xa3, 0x04, 0x05,
      0xf4,
    ];
    const vm = await createMachine({ backend: "soft", memoryMiB: 1 });
    try {
      vm.load(Uint8Array.from(code));
      expect((await vm.run({ timeoutMs: 5000 })).reason).toBe("hlt");
      const words = new DataView(vm.memory.read(0x500, 8).slice().buffer);
      const aux = vm.vcpu(0).getMsr(TSC_AUX);
      expect(words.getUint32(0, true)).not.toBe(0xffffffff);
      expect(words.getUint32(4, true)).toBe(words.getUint32(0, true));
      if (aux !== undefined) expect(BigInt(words.getUint32(0, true))).toBe(aux);
    } finally {
      vm.close();
    }
  });
});

describe('"use TSC offsetting" in VMX non-root operation (SDM Vol. 3C 26.3)', () => {
  // rdtsc; mov esi, eax; mov edi, edx; mov ecx, 0x10; rdmsr; hlt (the TSC counts retired
  // instructions here: no host clock, so the values are exact)
  const CODE = [0x0f, 0x31, 0x66, 0x89, 0xc6, 0x66, 0x89, 0xd7, 0x66, 0xb9, 0x10, 0, 0, 0, 0x0f, 0x32, 0xf4];
  /** RDMSR runs in the guest: an MSR bitmap of zeros */
  const run = (proc: number, offset?: bigint) => {
    const g = guest(CODE, { proc: proc | Proc.USE_MSR_BITMAPS });
    g.lp.vmwrite(F.MSR_BITMAP, g.mem.allocate(4096).hpa);
    if (offset !== undefined) g.lp.vmwrite(F.TSC_OFFSET, BigInt.asUintN(64, offset));
    expect(g.lp.vmlaunch()).toBe(HLT_EXIT);
    return read(g);
  };
  const read = (g: ReturnType<typeof guest>) => ({
    rdtsc: (g.cpu.getGpr(7) << 32n) | g.cpu.getGpr(6),
    rdmsr: (g.cpu.getGpr(2) << 32n) | g.cpu.getGpr(0),
  });

  it("adds the signed TSC offset to RDTSC and RDMSR IA32_TSC, and nothing without the control", () => {
    const base = run(Proc.HLT);
    for (const offset of [0x1_0000_0000n, -3n]) {
      const r = run(Proc.HLT | Proc.TSC_OFFSETTING, offset);
      expect(r.rdtsc, String(offset)).toBe(BigInt.asUintN(64, base.rdtsc + offset));
      expect(r.rdmsr, String(offset)).toBe(BigInt.asUintN(64, base.rdmsr + offset));
    }
    // the offset field alone changes nothing
    expect(run(Proc.HLT, 12345n)).toEqual(base);
  });
});
