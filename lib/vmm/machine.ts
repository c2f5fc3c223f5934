// The Machine: guest memory, vCPUs, buses, devices and the exit loop over one backend (KVM or the
// software VT-x). Everything a guest touches goes through here; the backend only runs the CPU.

import type { VirtioMmioSlot } from "../boot/acpi/dsdt.js";
import { withPcAcpi } from "../boot/acpi/pc.js";
import {
  type ElfOptions,
  type EntryState,
  type FlatOptions,
  type LinuxBootInfo,
  type LinuxOptions,
  type LoadImageOptions,
  type LoadResult,
  type LoadTarget,
  loadElf,
  loadFlat,
  loadImage,
  loadLinux,
  loadMultiboot,
  type MultibootOptions,
} from "../boot/index.js";
import type { Device, DeviceContext, IrqLine, StopRequest } from "../devices/device.js";
import { PcInterrupts } from "../devices/pc-interrupts.js";
import { VirtioMmioDevice } from "../devices/virtio/mmio-transport.js";
import type { GdbServerHandle, GdbServerOptions } from "../gdb/index.js";
import type { SaveOptions, SaveResult, SnapshotInfo } from "../snapshot/index.js";
import type { VmExit, VmExitKind } from "../types/exits.js";
import { emptyRegs, type Regs, type SpecialRegs } from "../types/regs.js";
import type { MachineBackend, VcpuBackend } from "./backend.js";
import { type BackendInfo, type BackendRequest, openBackend } from "./backend-select.js";
import type { BusClaim } from "./bus.js";
import { IoBusApi, MmioBusApi } from "./bus-api.js";
import { type GuestClock, InstructionClock, MachineClock } from "./clock.js";
import { InvalidArgumentError, MachineBusyError, MachineClosedError, MachineConfigError } from "./errors.js";
import { Emitter, type MachineEvents } from "./events.js";
import { defaultHandlers, type HandlerEnv } from "./handlers.js";
import { KvmVcpuThreads, kvmSmpUnsupported } from "./kvm-threads.js";
import { KvmRunWorker } from "./kvm-worker.js";
import {
  type ExitContext,
  type ExitHandler,
  ExitLoop,
  type RunLimits,
  type RunResult,
  type StopRun,
} from "./loop.js";
import type { VcpuThreads } from "./loop-threads.js";
import type { GuestMemory } from "./memory.js";
import type { ExitStats } from "./stats.js";
import {
  booleanArg,
  bytesArg,
  describeValue,
  functionArg,
  integerArg,
  limitArg,
  objectArg,
  oneOfArg,
  optional,
  optionsArg,
  stringArg,
} from "./validate.js";
import { Vcpu } from "./vcpu.js";
import { VirtioIoevents } from "./virtio-ioevents.js";
import { type KickTarget, Watchdog } from "./watchdog.js";

/**
 * What {@link createMachine} takes: guest RAM size, vCPU count, backend choice and run behaviour. Every field
 * is optional; bad values throw MachineConfigError or InvalidArgumentError before anything is opened.
 */
export interface MachineOptions {
  /** guest RAM in MiB; default 64 */
  memoryMiB?: number;
  /**
   * default 1, at most MAX_SOFT_VCPUS (on KVM also KVM_CAP_MAX_VCPUS). vCPU 0 is the bootstrap
   * processor, the others wait for INIT/SIPI as a PC's application processors do. On the soft
   * backend the vCPUs take turns on this thread in fixed instruction quanta; on KVM each enters the
   * guest from a thread of its own (the addon binding) and this thread handles every exit.
   */
  vcpus?: number;
  /**
   * default false. Soft backend: guest time counts instructions (1 ns each) instead of following
   * the host clock, device timers end entries at exact instruction counts, and vCPUs take turns in
   * fixed instruction quanta, so that a run is reproducible: the same guest exits (host "intr"
   * interruptions aside), output and final state every time, whatever the host's speed or load.
   * Input from the host (stdin, a handler's interrupt) is the only thing that can differ.
   */
  deterministic?: boolean;
  /** "auto" (default): KVM when /dev/kvm is usable, else the soft backend */
  backend?: BackendRequest;
  /** unregistered port/MMIO accesses end the run with an error instead of reading all-ones */
  strict?: boolean;
  /**
   * default true: add the devices the platform needs on this backend (the i8259 pair, I/O APIC
   * and local APIC on the soft backend; KVM has its own in the kernel)
   */
  platformDevices?: boolean;
  /**
   * KVM, default true: `await vm.run()` (with the addon) enters the guest from a worker thread of
   * its own, so the event loop stays free while the guest runs; false keeps async runs on the main
   * thread in slices bounded by the watchdog (more exits per second, a busier event loop).
   *
   * Soft backend, default false (or the environment's NODEVMM_VCPU_THREAD=1): true runs each vCPU,
   * its VMCS and interpreter in a worker thread of its own over shared guest memory, so the guest
   * runs beside the event loop, not in slices of it, machines run in parallel on a multi-core host,
   * and several vCPUs of one machine run at once (locked operations atomic across the threads).
   * Each exit crosses threads (fewer exits per second). Snapshots and the debugger work either
   * way; not yet with `deterministic`, which keeps the vCPUs on the machine's thread (`vm.warnings`
   * says so).
   */
  vcpuThread?: boolean;
  /**
   * KVM with the vCPU thread (`vcpuThread`), default true: while that thread enters the guest
   * (`await vm.run()`), a virtio-mmio device's QueueNotify writes signal an eventfd in the kernel
   * instead of exiting (KVM ioeventfd) and this thread runs the queue when it is readable. Entries
   * made on this thread (`runSync()`, hot phases of a run) keep the exit per notify. false: every
   * notify exits (as QEMU's and Firecracker's ioeventfd=off).
   */
  ioeventfd?: boolean;
  /**
   * Soft backend: the worker threads the vCPUs run on (implies `vcpuThread`; default one per vCPU).
   * Fewer than `vcpus`: each thread is a logical processor that runs one vCPU at a time, in time
   * slices, and the vCPUs move between threads (VMCLEAR on one, VMPTRLD on the other, the rest of
   * their state carried over); a halted vCPU holds no thread. The debugger needs a thread per vCPU.
   */
  vcpuThreads?: number;
  /**
   * resume a snapshot file: size and vCPUs come from it (lib/snapshot).
   * An incremental file brings its base along (found where it was, relative to the file); a list
   * names the whole chain instead, the full snapshot first and each incremental one on its predecessor.
   */
  restore?: string | readonly string[];
  /** with `restore`: attaches the snapshot's devices (e.g. addPcDevices) before its state goes back */
  setup?: (vm: Machine, snap: SnapshotInfo) => void | Promise<void>;
  /** with `restore`: what the restore could not carry over (e.g. across backends) */
  onNotes?: (notes: string[]) => void;
}

/** How createMachine sets up blocking entries (its options of the same names). */
interface BlockingEntryOptions {
  vcpuThread?: boolean;
  ioeventfd?: boolean;
}

/** What the machine needs of a soft backend's vCPU threads (backends/soft/threads.ts SoftVcpuThreads). */
interface SoftVcpuThreadsLike extends VcpuThreads {
  allParked(): boolean;
}

const MAX_MEMORY_MIB = 1 << 16;
/** xAPIC IDs are 8 bits (0xFF broadcasts); 64 as KVM's KVM_MAX_VCPUS of old */
export const MAX_SOFT_VCPUS = 64;
const RFLAGS_IF = 1n << 9n;

// Set in Machine's static block: what createMachine and in-repo tools reach of a machine's
// internals without making them part of the public class.
let exitLoopOf: (vm: Machine) => ExitLoop;
let ioeventsOf: (vm: Machine) => VirtioIoevents | undefined;
let setupBlockingEntry: (vm: Machine, opts: BlockingEntryOptions) => Promise<void>;

interface Polled {
  device: Device;
  deadline: number;
}

/**
 * A virtual machine: guest memory, vCPUs, the port-I/O and MMIO buses, devices and the VM-exit loop, the same
 * on KVM and on the software VT-x. Made by {@link createMachine} (the constructor is not part of the public
 * API); load an image, add devices, then {@link Machine.run} or {@link Machine.runSync}. Call {@link
 * Machine.close} (or `using`) to release the backend.
 */
export class Machine {
  /**
   * The backend the machine runs on (KVM or the software VT-x). Mostly for tools: vCPUs, memory and interrupt
   * lines have their own members here.
   */
  readonly backend: MachineBackend;
  /** Which backend was chosen and, for `backend: "auto"`, why KVM was not used (`fallbackReason`). */
  readonly backendInfo: BackendInfo;
  /** Guest-physical RAM: `memoryMiB` MiB from address 0 (on KVM the very pages the guest sees, no copies). */
  readonly memory: GuestMemory;
  /**
   * The port-I/O bus (ports 0 to 0xFFFF): `vm.io.onIn`/`onOut` register handlers; devices' ranges are mapped
   * here.
   */
  readonly io = new IoBusApi();
  /** The MMIO bus (guest-physical addresses outside RAM): `vm.mmio.onRead`/`onWrite` register handlers. */
  readonly mmio = new MmioBusApi();
  /** guest time: host time plus idle skips, or instructions on a deterministic machine */
  readonly clock: GuestClock;
  readonly #loop: ExitLoop;
  /**
   * the soft backend's interrupt controller when the machine added one: the i8259 pair, I/O APIC
   * and local APIC (`pic.i8259`, `pic.ioapic`, `pic.lapic`) and the routing between them
   */
  readonly pic: PcInterrupts | undefined;
  readonly #devices: Device[] = [];
  readonly #vcpus: Vcpu[];
  /** the vCPUs' backends, in index order (what a run enters) */
  #backends: VcpuBackend[] = [];
  readonly #events = new Emitter<MachineEvents>();
  readonly #env: HandlerEnv;
  readonly #polled: Polled[] = [];
  #nextDeadline = Number.POSITIVE_INFINITY;
  #pendingStop: StopRun | undefined;
  #running = false;
  #closed = false;
  #exitIndex = 0;
  #kickTarget: KickTarget | undefined;
  #watchdog: Watchdog | undefined;
  #vcpuThread: KvmRunWorker | undefined;
  /** virtio queue notifications through KVM ioeventfd (virtio-ioevents.ts) */
  #ioevents: VirtioIoevents | undefined;
  /** the soft vCPUs run in worker threads (backends/soft/threads.ts) */
  #softThreads = false;
  #isHalted: (() => boolean) | undefined;
  /** the guest halted with interrupts on and nothing on the machine's side can wake it */
  #idleWait = false;
  /** resolves the pending waitForEvent() of an idle async run */
  #wake: (() => void) | undefined;
  #lastResult: RunResult | undefined;

  constructor(
    backend: MachineBackend,
    backendInfo: BackendInfo,
    opts: { vcpus?: number; strict?: boolean; pic?: PcInterrupts; deterministic?: boolean } = {},
  ) {
    this.backend = backend;
    this.backendInfo = backendInfo;
    this.memory = backend.memory;
    const deterministic = opts.deterministic ?? false;
    if (deterministic && backend.kind !== "soft") {
      throw new MachineConfigError(
        `deterministic runs need the soft backend (this machine runs on ${backend.kind})`,
      );
    }
    const instructionClock = deterministic
      ? new InstructionClock(() => this.#instructionsRetired())
      : undefined;
    this.clock = instructionClock ?? new MachineClock();
    backend.useClock?.(this.clock);
    this.#env = {
      io: this.io.bus,
      mmio: this.mmio.bus,
      lastAccessUnhandled: false,
      idle: (ctx) => this.#idle(ctx),
    };
    this.#loop = new ExitLoop(defaultHandlers(this.#env), {
      afterExit: (exit, ctx) => this.#afterExit(exit, ctx.vcpuIndex),
      pendingStop: () => {
        const s = this.#pendingStop;
        this.#pendingStop = undefined;
        return s;
      },
      service: () => this.#service(),
      nextServiceMs: () =>
        this.#polled.length === 0 || !Number.isFinite(this.#nextDeadline)
          ? Number.POSITIVE_INFINITY
          : performance.now() + (this.#nextDeadline - this.clock.nowNs()) / 1e6,
      refineExit: (exit, ctx) => {
        // the local APIC page answers for the CPU whose exit this is
        if (this.pic) this.pic.currentCpu = ctx.vcpuIndex;
        return exit.kind === "intr" && this.#haltedForGood() ? { kind: "hlt", raw: exit.raw } : exit;
      },
      allAsleep: () => this.#allAsleep(),
      ...(instructionClock
        ? { deviceBudget: () => instructionClock.instructionsUntil(this.#nextDeadline) }
        : {}),
      takeIdleWait: () => {
        const w = this.#idleWait;
        this.#idleWait = false;
        return w;
      },
      waitForEvent: (untilMs) => this.#waitForEvent(untilMs),
    });
    for (const bus of [this.io.bus, this.mmio.bus]) {
      bus.onUnhandled = (access) => {
        this.#loop.stats.unhandled++;
        this.#events.emit("unhandled", access);
      };
    }
    this.strict = opts.strict ?? false;
    const n = opts.vcpus ?? 1;
    this.#vcpus = [];
    const closed = () => this.#closed;
    for (let i = 0; i < n; i++) this.#vcpus.push(new Vcpu(backend.createVcpu(i), this.memory, closed));
    this.#backends = this.#vcpus.map((v) => v.backend);
    this.pic = opts.pic;
    if (opts.pic) {
      // INIT, SIPI and NMI messages on the APIC bus reach the vCPU they address
      opts.pic.onCpuSignal = (cpu, kind, vector) => this.#vcpus[cpu]?.backend.signal?.(kind, vector);
    }
    for (const d of opts.pic?.devices ?? []) this.addDevice(d);
  }

  static {
    // internals createMachine, the CLI, tests and benchmarks reach, kept off the public class
    exitLoopOf = (vm) => vm.#loop;
    ioeventsOf = (vm) => vm.#ioevents;
    setupBlockingEntry = (vm, opts) => vm.#setupBlockingEntry(opts);
  }

  /** the result of the last run that ended (undefined before the first) */
  get lastResult(): RunResult | undefined {
    return this.#lastResult;
  }

  /**
   * Strict mode: an access to a port or MMIO address nobody claimed ends the run with reason "error"
   * (UnhandledAccessError) instead of reading all-ones / dropping the write. Settable at any time; starts as
   * `MachineOptions.strict` (default false).
   */
  get strict(): boolean {
    return this.io.bus.strict;
  }
  set strict(on: boolean) {
    booleanArg("strict", on);
    this.io.bus.strict = on;
    this.mmio.bus.strict = on;
  }

  /**
   * The devices added with {@link Machine.addDevice} (and the platform's own), in the order they were added.
   */
  get devices(): readonly Device[] {
    return this.#devices;
  }

  /** VM-exit counts and times per exit kind and per vCPU, over the machine's lifetime (all runs). */
  get stats(): ExitStats {
    return this.#loop.stats;
  }

  /** How many vCPUs the machine has (`MachineOptions.vcpus`). */
  get vcpuCount(): number {
    return this.#vcpus.length;
  }

  /**
   * vCPU `i` (default 0, the bootstrap processor): its registers, MSRs and `dump()`. Throws
   * MachineConfigError when there is no such vCPU.
   */
  vcpu(i = 0): Vcpu {
    integerArg("i", i, 0, Number.MAX_SAFE_INTEGER);
    const v = this.#vcpus[i];
    if (!v) throw new MachineConfigError(`no vCPU ${i} (the machine has ${this.#vcpus.length})`);
    return v;
  }

  /** Calls `fn` at each `event`; returns a function that removes it. */
  on<K extends keyof MachineEvents>(event: K, fn: MachineEvents[K]): () => void {
    oneOfArg("event", event, MACHINE_EVENTS);
    functionArg("fn", fn);
    return this.#events.on(event, fn);
  }
  /** Calls `fn` at the next `event` only; returns a function that removes it before then. */
  once<K extends keyof MachineEvents>(event: K, fn: MachineEvents[K]): () => void {
    oneOfArg("event", event, MACHINE_EVENTS);
    functionArg("fn", fn);
    const off = this.#events.on(event, ((...args: Parameters<MachineEvents[K]>) => {
      off();
      (fn as (...a: Parameters<MachineEvents[K]>) => void)(...args);
    }) as MachineEvents[K]);
    return off;
  }
  /** Removes a listener added with {@link Machine.on} (a no-op when `fn` is not listening). */
  off<K extends keyof MachineEvents>(event: K, fn: MachineEvents[K]): void {
    oneOfArg("event", event, MACHINE_EVENTS);
    this.#events.off(event, fn);
  }

  /** Overrides the handler for one exit kind; returns the previous handler so yours can delegate. */
  setExitHandler<K extends VmExitKind>(
    kind: K,
    handler: ExitHandler<Extract<VmExit, { kind: K }>>,
  ): ExitHandler<Extract<VmExit, { kind: K }>> | undefined {
    oneOfArg("kind", kind, EXIT_KINDS);
    functionArg("handler", handler);
    return this.#loop.setHandler(kind, handler);
  }

  /** An interrupt line routed to the backend (KVM_IRQ_LINE, or the soft backend's PIC). */
  irqLine(line: number): IrqLine {
    integerArg("line", line, 0, 255);
    const set = (level: boolean) => {
      booleanArg("level", level);
      // a device may lower its line as it closes: after close() lines go nowhere
      if (this.#closed) return;
      this.backend.setIrqLine(line, level);
      if (level) this.#wake?.();
    };
    return {
      set,
      pulse: () => {
        set(true);
        set(false);
      },
    };
  }

  /** Maps the device's ranges on the buses (all or none), wires its IRQ, clock and stop requests. */
  addDevice<D extends Device>(device: D): D {
    this.#checkOpen();
    checkDevice(device);
    if (this.#devices.includes(device)) throw new MachineConfigError(`${device.name} is already attached`);
    const releases: (() => void)[] = [];
    try {
      device.ranges.forEach((range, i) => {
        const bus = range.space === "io" ? this.io.bus : range.space === "mmio" ? this.mmio.bus : undefined;
        if (!bus)
          throw new MachineConfigError(`${device.name}: range ${i} has unknown space ${String(range.space)}`);
        const claim: BusClaim = {
          name: device.name,
          base: range.base,
          length: range.length,
          read: (off, size) => device.read(off, size, i),
          write: (off, size, value) => device.write(off, size, value, i),
        };
        releases.push(bus.claim(claim));
      });
    } catch (e) {
      for (const r of releases) r();
      throw e;
    }
    const polled: Polled | undefined = device.poll ? { device, deadline: 0 } : undefined;
    const ctx: DeviceContext = {
      clock: this.clock,
      requestStop: (req) => this.#requestStop(req),
      requestPoll: () => {
        if (!polled) return;
        polled.deadline = 0;
        this.#nextDeadline = 0;
        this.#wake?.();
      },
    };
    if (device.irq !== undefined) ctx.irq = this.irqLine(device.irq);
    device.attach?.(ctx);
    this.#devices.push(device);
    if (device instanceof VirtioMmioDevice) this.#ioevents?.add(device);
    if (polled) {
      this.#polled.push(polled);
      this.#nextDeadline = 0;
    }
    return device;
  }

  // ---- loaders (lib/boot) ----

  /**
   * Copies a flat binary into guest memory and sets vCPU 0 up to start it (real, protected or long mode, per
   * `opts.mode`). Throws GuestImageError when it does not fit.
   */
  loadFlat(image: Uint8Array, opts?: FlatOptions): LoadResult {
    const o = checkLoadOptions(opts);
    return this.#load(image, () => loadFlat(this.memory, image, o));
  }
  /**
   * Loads an ELF32/ELF64 executable's PT_LOAD segments at their physical addresses and sets vCPU 0 at its
   * entry point. Throws GuestImageError for a malformed or unsupported image.
   */
  loadElf(image: Uint8Array, opts?: ElfOptions): LoadResult {
    const o = checkLoadOptions(opts);
    return this.#load(image, () => loadElf(this.memory, image, o));
  }
  /**
   * Loads a multiboot v1 kernel (with modules and command line), builds the multiboot information and ACPI
   * tables, and enters it in 32-bit protected mode as the spec says (EAX = 0x2BADB002, EBX = info).
   */
  loadMultiboot(image: Uint8Array, opts?: MultibootOptions): LoadResult {
    const o = checkLoadOptions(opts);
    const result = this.#load(image, () => loadMultiboot(this.memory, image, o));
    // a multiboot kernel finds the ACPI tables where firmware leaves them (QEMU's SeaBIOS does)
    withPcAcpi({}, this.vcpuCount, this.#virtioSlots()).install(this.memory);
    return result;
  }
  /** A Linux bzImage through the x86 boot protocol (64-bit entry when the kernel has one). */
  loadLinux(opts: LinuxOptions): LoadResult & { linux: LinuxBootInfo } {
    this.#checkOpen();
    objectArg("opts", opts);
    checkLoadOptions(opts);
    bytesArg("opts.kernel", opts.kernel);
    let result: (LoadResult & { linux: LinuxBootInfo }) | undefined;
    // the PC's ACPI tables (lib/boot/acpi), unless the caller names an RSDP of its own
    const acpi = withPcAcpi(this.#decompressWhere(opts), this.vcpuCount, this.#virtioSlots());
    this.#load(opts?.kernel, () => {
      result = loadLinux(this.memory, acpi.options);
      return result;
    });
    acpi.install(this.memory);
    return result!;
  }
  /**
   * LinuxOptions.decompress "auto" as this machine means it: on KVM the kernel's own decompressor
   * (native speed there; nested, the host's took 5-12 s of a 40 s boot), on soft the host's.
   */
  #decompressWhere<T extends { decompress?: LinuxOptions["decompress"] }>(opts: T): T {
    if ((opts.decompress ?? "auto") !== "auto") return opts;
    return { ...opts, decompress: this.backend.kind === "kvm" ? "guest" : "host" };
  }

  /** the virtio-mmio devices attached so far, for the DSDT (lib/boot/acpi) */
  #virtioSlots(): VirtioMmioSlot[] {
    return this.#devices
      .filter((d): d is VirtioMmioDevice => d instanceof VirtioMmioDevice && d.irq !== undefined)
      .map((d) => ({ base: d.ranges[0]!.base, length: d.ranges[0]!.length, irq: d.irq! }));
  }

  /**
   * Any supported format; `format: "auto"` (default) detects a bzImage, multiboot, then ELF, else flat.
   * `format: "bios"` (never detected) maps a 64/128/256 KiB firmware image read-only below 4 GiB, its
   * last 128 KiB at most also below 1 MiB, and starts vCPU 0 in the reset state at F000:FFF0; a
   * machine takes one firmware image, and not with soft vCPU threads.
   */
  load(image: Uint8Array, opts?: LoadImageOptions): LoadResult {
    this.#checkOpen();
    bytesArg("image", image);
    const acpi = withPcAcpi(
      this.#decompressWhere(checkLoadOptions(opts)),
      this.vcpuCount,
      this.#virtioSlots(),
    );
    const target = opts?.format === "bios" ? this.#romTarget() : this.memory;
    const result = this.#load(image, () => {
      const r = loadImage(target, image, acpi.options);
      // RESET leaves the processor's signature in EDX (SDM 9.1.4), for firmware to read
      const signature = r.format === "bios" ? this.backend.cpuSignature?.() : undefined;
      if (signature !== undefined) r.entry.regs.rdx = BigInt(signature >>> 0);
      return r;
    });
    if (result.format === "linux" || result.format === "multiboot") acpi.install(this.memory);
    return result;
  }

  #romMapped = false;

  /** guest memory as a loader sees it, plus the backend's read-only mappings for firmware */
  #romTarget(): LoadTarget {
    const memory = this.memory;
    return {
      get size() {
        return memory.size;
      },
      get regions() {
        return memory.regions;
      },
      write: (gpa, data) => memory.write(gpa, data),
      view: (gpa, length) => memory.view(gpa, length),
      find: (gpa, length) => memory.find(gpa, length),
      mapRom: (gpa, bytes) => {
        if (this.#romMapped)
          throw new MachineConfigError("this machine has its firmware already: load it once");
        if (!this.backend.mapRom) {
          throw new MachineConfigError(
            `the ${this.backend.kind} backend cannot map read-only memory for firmware`,
          );
        }
        this.backend.mapRom(gpa, bytes);
        this.#romMapped = true;
        // the guest's writes to ROM exit (read-only slot, EPT without write) and go nowhere, as on
        // a PC, also in strict mode
        this.mmio.onWrite(gpa, bytes.length, () => {});
      },
    };
  }

  /** Puts vCPU `i` in a loader's entry state (registers not named are zero; CR2/CR8/APIC base kept). */
  applyEntry(entry: EntryState, i = 0): void {
    objectArg("entry", entry);
    const vcpu = this.vcpu(i);
    const regs: Regs = { ...emptyRegs(), ...entry.regs };
    const current = vcpu.getSregs();
    const sregs: SpecialRegs = { ...current, ...entry.sregs };
    vcpu.setSregs(sregs);
    vcpu.setRegs(regs);
  }

  #load(image: Uint8Array, load: () => LoadResult): LoadResult {
    this.#checkOpen();
    bytesArg("image", image);
    const result = load();
    this.applyEntry(result.entry);
    return result;
  }

  // ---- running ----

  /** the vCPUs a run enters: vCPU 0 alone, or all of them (SMP) */
  #runVcpus(): VcpuBackend | readonly VcpuBackend[] {
    this.#checkOpen();
    return this.#backends.length === 1 ? this.#backends[0]! : this.#backends;
  }

  /** Runs the guest (every vCPU) on the calling thread until it stops or a limit is reached. */
  runSync(limits?: RunLimits): RunResult {
    const checked = checkLimits(limits);
    this.#beginRun();
    const unlisten = this.#listenAbort(checked.signal);
    try {
      this.#lastResult = this.#loop.runSync(this.#runVcpus(), checked);
      return this.#lastResult;
    } finally {
      unlisten();
      this.#running = false;
    }
  }

  /**
   * Runs the guest without holding the event loop (timers, stdin, other I/O keep working): on KVM a
   * worker thread enters the guest and hands each exit to this thread (`hasVcpuThread`); otherwise
   * in slices with the event loop served in between.
   */
  async run(limits?: RunLimits): Promise<RunResult> {
    const checked = checkLimits(limits);
    this.#beginRun();
    const unlisten = this.#listenAbort(checked.signal);
    try {
      this.#lastResult = await this.#loop.run(this.#runVcpus(), checked);
      return this.#lastResult;
    } finally {
      unlisten();
      this.#running = false;
    }
  }

  /** Whether a run (run() or runSync()) is in progress. */
  get running(): boolean {
    return this.#running;
  }

  /** whether close() was called */
  get closed(): boolean {
    return this.#closed;
  }

  /** An AbortSignal in the run's limits stops it as stop() does (at once when already aborted). */
  #listenAbort(signal: AbortSignal | undefined): () => void {
    if (!signal) return () => {};
    if (signal.aborted) {
      this.#pendingStop ??= { reason: "stopped", message: "the run's signal was aborted" };
      return () => {};
    }
    const onAbort = () => {
      this.#pendingStop ??= { reason: "stopped", message: "the run's signal was aborted" };
      this.stop();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    return () => signal.removeEventListener("abort", onAbort);
  }

  /** A GDB remote stub for vCPU 0 (lib/gdb); run the guest with the handle's run() so gdb steers it. */
  async gdbServer(opts?: GdbServerOptions): Promise<GdbServerHandle> {
    this.#checkOpen();
    const o = optionsArg("opts", opts);
    const { startGdbServer } = await import("../gdb/index.js");
    return startGdbServer(this, o);
  }

  /** Saves the stopped machine to a file (lib/snapshot); SnapshotError while it runs. */
  async snapshot(path: string, opts: SaveOptions = {}): Promise<SaveResult> {
    const { saveSnapshot } = await import("../snapshot/index.js");
    return saveSnapshot(this, path, opts);
  }

  /** Ends the current run with reason "stopped" (at the next exit; the vCPU is kicked). No-op when idle. */
  stop(): void {
    if (!this.#running) return;
    this.#pendingStop ??= { reason: "stopped", message: "stopped by the host" };
    for (const v of this.#vcpus) v.backend.kick();
    this.#wake?.();
  }

  /**
   * Releases the backend (vCPUs, guest memory, the KVM file descriptors). A run in progress ends
   * as "stopped"; afterwards register access, dump() and guest memory throw MachineClosedError.
   * Closing twice is a no-op.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#running) {
      this.#pendingStop ??= { reason: "stopped", message: "the machine was closed during the run" };
      this.#wake?.();
    }
    if (this.#vcpuThread) {
      // a run in progress: its entry ends at the kick, the thread then leaves (and the run resolves)
      this.#pendingStop ??= { reason: "stopped", message: "the machine was closed during the run" };
      this.#vcpuThread.close();
      this.vcpu(0).backend.kick();
      this.#loop.vcpuThread = undefined;
      this.#wake?.();
    }
    // before the devices go: a notification the eventfd took must not run a closed device's queue
    this.#ioevents?.close();
    for (const d of this.#devices) (d as { close?: () => void }).close?.();
    void this.#watchdog?.close();
    this.#loop.watchdog = undefined;
    for (const v of this.#vcpus) v.backend.close();
    this.memory.close();
    this.backend.close();
  }

  /** `using vm = await createMachine()` closes it at the end of the scope. */
  [Symbol.dispose](): void {
    this.close();
  }
  /** `await using vm = await createMachine()` closes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #beginRun(): void {
    this.#checkOpen();
    if (this.#running) throw new MachineBusyError("the machine is already running");
    this.#running = true;
    this.memory.markTouched();
  }

  /** Problems that limit what runs can do (e.g. no watchdog: KVM runs cannot be interrupted). */
  readonly warnings: string[] = [];

  /**
   * For backends whose run() blocks until the guest exits (KVM): how a watchdog thread kicks vCPU 0
   * (bounding timeouts and async slices) and how to tell a final in-kernel HLT. Called by
   * createMachine; both come from the backend's own crossThreadKick()/isHalted().
   */
  async #setupBlockingEntry(opts: BlockingEntryOptions): Promise<void> {
    const soft = this.backend as { vcpuThreads?(): Promise<SoftVcpuThreadsLike | undefined> };
    if (this.backend.kind === "soft" && soft.vcpuThreads) {
      // soft vCPUs in worker threads (backends/soft/threads.ts): every run, sync or async, goes
      // through them; the machine's thread only handles exits
      const threads = await soft.vcpuThreads();
      if (threads) {
        this.#softThreads = true;
        this.#loop.vcpuThreads = threads;
        this.#isHalted = () => threads.allParked() && this.#backends.every((b) => !(b.runnable?.() ?? true));
        return;
      }
    }
    if (this.backend.kind === "kvm" && this.#backends.length > 1) {
      // SMP: a thread per vCPU enters KVM_RUN for every run, sync or async (kvm-threads.ts); the
      // main thread never does, so it needs no watchdog. MachineConfigError when threads cannot.
      const threads = await KvmVcpuThreads.start(this.#backends);
      this.#loop.vcpuThreads = threads;
      this.#kickTarget = this.#backends[0]!.crossThreadKick?.();
      // MP states only while no vCPU is in KVM_RUN (the ioctl would wait for the run to end)
      this.#isHalted = () => threads.allParked() && this.#backends.every((b) => b.isHalted?.() ?? false);
      return;
    }
    const v = this.vcpu(0).backend;
    const target = v.crossThreadKick?.();
    const halted = v.isHalted ? () => v.isHalted!() : undefined;
    this.#kickTarget = target;
    this.#isHalted = halted;
    if (this.backend.kind === "kvm" && !target) {
      this.warnings.push(
        "KVM runs cannot be interrupted here (no cross-thread kick: the addon binding is needed); timeouts and async slices only act between exits",
      );
    }
    if (target) {
      // started now and checked, so that a broken watchdog is a warning here, not a hang later
      const w = new Watchdog(target);
      try {
        await w.ready();
        this.#watchdog = w;
        this.#loop.watchdog = w;
      } catch (e) {
        void w.close();
        this.#kickTarget = undefined;
        this.warnings.push(
          `the KVM watchdog thread failed (${e instanceof Error ? e.message : String(e)}); runs cannot be interrupted`,
        );
      }
    }
    if (target && (opts.vcpuThread ?? true)) await this.#startVcpuThread(target, opts.ioeventfd ?? true);
  }

  /** Async KVM runs: a worker enters the guest (kvm-worker.ts); without one they slice on this thread. */
  async #startVcpuThread(target: KickTarget, ioeventfd: boolean): Promise<void> {
    // the thread enters the guest through the addon only; koffi runs slice here under the watchdog
    if (target.binding === "koffi") return;
    const v = this.vcpu(0).backend as VcpuBackend & { exitOf?(exited: boolean): VmExit };
    const exitOf = v.exitOf?.bind(v);
    if (!exitOf) return;
    const w = new KvmRunWorker(target);
    try {
      await w.ready();
    } catch (e) {
      w.close();
      this.warnings.push(
        `the KVM vCPU thread failed (${e instanceof Error ? e.message : String(e)}); await vm.run() slices on the main thread`,
      );
      return;
    }
    this.#vcpuThread = w;
    const sink = ioeventfd ? this.backend.ioevents?.() : undefined;
    if (sink) {
      const events = new VirtioIoevents(sink);
      this.#ioevents = events;
      for (const d of this.#devices) if (d instanceof VirtioMmioDevice) events.add(d);
    }
    // a guest that exits hot is entered from this thread in watchdog-bounded slices (the event loop
    // still turns between them): each exit handed between threads cost more than the exit itself
    // (bench/exit-loop, nested-KVM lane: 0.84x runSync hot against 0.20x through the thread)
    this.#loop.hotEntry = true;
    this.#loop.vcpuThread = {
      get closed() {
        return w.closed;
      },
      begin: () => w.begin(),
      end: () => w.end(),
      start: () => w.start(),
      poll: (ms) => w.poll(ms),
      wait: (ms) => w.wait(ms),
      exit: () => exitOf(w.take()),
      kick: () => v.kick(),
      offload: (on) => this.#ioevents?.arm(on),
    };
  }

  /**
   * Writes to this range may reach their handlers late, batched, but in order (KVM coalesced
   * MMIO/PIO: the guest does not exit for each): for devices that only record what is written
   * (debug console, POST codes), never for ones whose writes the guest must see take effect at
   * once. Returns whether the backend does it (KVM with the capability; else writes exit as usual).
   */
  coalesceWrites(space: "io" | "mmio", base: number, length = 1): boolean {
    this.#checkOpen();
    oneOfArg("space", space, ["io", "mmio"] as const);
    integerArg("base", base, 0, Number.MAX_SAFE_INTEGER);
    integerArg("length", length, 1, Number.MAX_SAFE_INTEGER);
    return this.backend.coalesceWrites?.(space, base, length) ?? false;
  }

  /**
   * whether runs enter the guest from a thread of their own: `await vm.run()` on KVM with the
   * addon; every run on the soft backend with `vcpuThread: true`
   */
  get hasVcpuThread(): boolean {
    return this.#loop.vcpuThread !== undefined || this.#softThreads;
  }

  /** whether runs on this machine can be bounded while the guest never exits */
  get canInterruptEntry(): boolean {
    return this.#kickTarget !== undefined || this.backend.kind === "soft";
  }

  /**
   * SMP: no vCPU can ever run again: none is runnable and none has interrupts enabled (a vCPU
   * waiting for SIPI has IF clear; only another CPU's SIPI could start it, and none runs).
   */
  #allHaltedForGood(): boolean {
    for (const v of this.#backends) {
      // a vCPU in a thread of its own that is in an entry says so itself (soft vCPU threads)
      const asleep = v.asleepForGood?.();
      if (asleep !== undefined) {
        if (!asleep) return false;
        continue;
      }
      if (v.runnable?.() ?? true) return false;
      if ((v.getRegs().rflags & RFLAGS_IF) !== 0n) return false;
    }
    return true;
  }

  /** instructions all vCPUs retired (the deterministic clock's count) */
  #instructionsRetired(): number {
    let n = 0;
    for (const v of this.#backends) n += v.instructionsRetired?.() ?? 0;
    return n;
  }

  /** SMP, every vCPU asleep: end the run, jump to the next device deadline, or wait for the host. */
  #allAsleep(): StopRun | "resume" | "wait" {
    if (this.#allHaltedForGood()) {
      return { reason: "hlt", message: "every vCPU halted with interrupts disabled or waits for SIPI" };
    }
    this.#service();
    if (this.#backends.some((v) => v.runnable?.() ?? true)) return "resume";
    if (!Number.isFinite(this.#nextDeadline)) return "wait";
    this.clock.advanceTo(this.#nextDeadline);
    this.#service();
    return "resume";
  }

  /** every vCPU is halted in the kernel with interrupts disabled, or waits for INIT/SIPI (KVM) */
  #haltedForGood(): boolean {
    if (!this.#isHalted?.()) return false;
    return this.#backends.every((b) => (b.getRegs().rflags & RFLAGS_IF) === 0n);
  }

  #checkOpen(): void {
    if (this.#closed) throw new MachineClosedError();
  }

  #requestStop(req: StopRequest): void {
    let stop: StopRun;
    if (req.reason === "debug-exit") {
      stop = {
        reason: "debug-exit",
        exitCode: req.code,
        message: `guest wrote debug-exit, code ${req.code}`,
      };
    } else if (req.reason === "reset") {
      stop = { reason: "reset", message: "guest requested a reset" };
    } else {
      stop = { reason: "poweroff", message: "guest powered off" };
    }
    this.#pendingStop ??= stop;
    this.#wake?.();
  }

  #waitForEvent(untilMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, untilMs - performance.now()));
      this.#wake = done;
    });
  }

  #afterExit(exit: VmExit, vcpu: number): void {
    const index = this.#exitIndex++;
    if (this.#events.has("exit")) {
      this.#events.emit("exit", exit, { vcpu, index, unhandled: this.#env.lastAccessUnhandled });
    }
    this.#env.lastAccessUnhandled = false;
  }

  /** Calls poll() of the devices whose deadline has come. */
  #service(): void {
    if (this.#polled.length === 0) return;
    const now = this.clock.nowNs();
    if (now < this.#nextDeadline) return;
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.#polled) {
      if (p.deadline <= now) {
        const wait = p.device.poll!(now);
        p.deadline = wait === undefined ? Number.POSITIVE_INFINITY : now + Math.max(0, wait);
      }
      if (p.deadline < next) next = p.deadline;
    }
    this.#nextDeadline = next;
  }

  /**
   * HLT: with interrupts disabled the halt is final. Otherwise guest time jumps to the next device
   * deadline and the guest resumes; with no deadline only the host can wake the guest (stdin into
   * COM1, a line raised by a handler, stop()), so the loop waits for that, as a vCPU halted in KVM
   * does, until the run's limits end it.
   */
  #idle(ctx: ExitContext): boolean {
    // SMP: the halted vCPU sleeps (not runnable) while others run; allAsleep() decides the rest
    if (this.#backends.length > 1) return !this.#allHaltedForGood();
    const regs = this.vcpu(ctx.vcpuIndex).getRegs();
    if ((regs.rflags & RFLAGS_IF) === 0n) return false;
    this.#service();
    if (Number.isFinite(this.#nextDeadline)) {
      this.clock.advanceTo(this.#nextDeadline);
      this.#service();
    } else {
      this.#idleWait = true;
    }
    return true;
  }
}

function checkOptions(opts: MachineOptions): { memoryMiB: number; vcpus: number } {
  const memoryMiB = integerArg("opts.memoryMiB", opts.memoryMiB ?? 64, 1, MAX_MEMORY_MIB);
  const vcpus = integerArg("opts.vcpus", opts.vcpus ?? 1, 1, Number.MAX_SAFE_INTEGER);
  const backend = opts.backend ?? "auto";
  if (typeof backend !== "function") oneOfArg("opts.backend", backend, ["auto", "kvm", "soft"] as const);
  optional(opts.strict, "opts.strict", booleanArg);
  optional(opts.platformDevices, "opts.platformDevices", booleanArg);
  optional(opts.vcpuThread, "opts.vcpuThread", booleanArg);
  optional(opts.ioeventfd, "opts.ioeventfd", booleanArg);
  if (opts.vcpuThreads !== undefined) {
    integerArg("opts.vcpuThreads", opts.vcpuThreads, 1, MAX_SOFT_VCPUS);
    if (opts.vcpuThread === false) {
      throw new MachineConfigError("vcpuThreads: worker threads asked for with vcpuThread: false");
    }
  }
  optional(opts.deterministic, "opts.deterministic", booleanArg);
  if (vcpus > MAX_SOFT_VCPUS) {
    throw new MachineConfigError(`vcpus: ${vcpus} requested, at most ${MAX_SOFT_VCPUS} are supported`);
  }
  return { memoryMiB, vcpus };
}

/** Creates a machine on the requested backend ("auto": KVM when usable, else soft; see backendInfo). */
export async function createMachine(options?: MachineOptions): Promise<Machine> {
  const opts = optionsArg("options", options);
  if (opts.restore !== undefined) {
    const { createRestoredMachine } = await import("../snapshot/index.js");
    return createRestoredMachine({ ...opts, restore: opts.restore }, createMachine);
  }
  const { memoryMiB, vcpus } = checkOptions(opts);
  const pic = new PcInterrupts({ cpus: vcpus });
  const request = opts.backend ?? "auto";
  // soft vCPU threads: asked for, on the host clock (deterministic runs take turns on this thread)
  const softThreadAsked =
    opts.vcpuThread ?? (opts.vcpuThreads !== undefined || process.env.NODEVMM_VCPU_THREAD === "1");
  const vcpuThreads = softThreadAsked && !(opts.deterministic ?? false);
  const factoryOpts = {
    memoryBytes: memoryMiB * 1024 * 1024,
    interruptController: pic,
    vcpus,
    vcpuThreads,
    ...(vcpuThreads && opts.vcpuThreads !== undefined ? { vcpuThreadCount: opts.vcpuThreads } : {}),
  };
  // deterministic runs are the soft backend's: "auto" goes there rather than refuse on a KVM host
  const softOnly = (opts.deterministic ?? false) && request === "auto";
  let { backend, info } = await openBackend(softOnly ? "soft" : request, factoryOpts);
  if (softOnly) {
    const fallbackReason = "deterministic runs on the soft backend";
    info = { kind: "soft", requested: "auto", fallbackReason, message: "soft (deterministic)" };
  }
  // SMP on KVM enters KVM_RUN from a thread per vCPU, which only the addon binding can
  const noSmp = vcpus > 1 ? kvmSmpUnsupported(backend) : undefined;
  if (noSmp) {
    backend.close();
    if (request !== "auto") throw new MachineConfigError(`vcpus: ${vcpus} on KVM: ${noSmp}`);
    ({ backend } = await openBackend("soft", factoryOpts));
    const fallbackReason = `${vcpus} vCPUs: ${noSmp}`;
    info = { kind: "soft", requested: "auto", fallbackReason, message: `soft (${fallbackReason})` };
  }
  const platform = (opts.platformDevices ?? true) && backend.kind === "soft";
  try {
    const vm = new Machine(backend, info, {
      vcpus,
      deterministic: opts.deterministic ?? false,
      strict: opts.strict ?? false,
      ...(platform ? { pic } : {}),
    });
    // IA32_APIC_BASE.EN lives in the vCPU (MSR 0x1b); read only when an interrupt is in question
    if (platform) {
      pic.lapics.forEach((lapic, i) => {
        lapic.hardwareEnabled = () => ((vm.vcpu(i).getMsr(0x1b) ?? 0x800n) & 0x800n) !== 0n;
      });
    }
    await setupBlockingEntry(vm, {
      ...(opts.vcpuThread === undefined ? {} : { vcpuThread: opts.vcpuThread }),
      ...(opts.ioeventfd === undefined ? {} : { ioeventfd: opts.ioeventfd }),
    });
    const threadAsked = opts.vcpuThread === true || opts.vcpuThreads !== undefined;
    if (backend.kind === "soft" && threadAsked && !vcpuThreads) {
      vm.warnings.push(
        "deterministic runs interleave the vCPUs on the machine's thread (vcpuThread is ignored)",
      );
    }
    return vm;
  } catch (e) {
    backend.close();
    throw e;
  }
}

/**
 * The machine's exit loop (handler table, stats, tuning knobs): for the CLI, tests and benchmarks
 * in this repository, not exported from the package (users have setExitHandler and stats).
 */
export function machineExitLoop(vm: Machine): ExitLoop {
  return exitLoopOf(vm);
}

/**
 * The machine's virtio ioeventfd notifications (undefined: every notify exits), for tests and
 * benchmarks in this repository: its eventfd, wake-ups, whether it is armed or gave up.
 */
export function machineIoevents(vm: Machine): VirtioIoevents | undefined {
  return ioeventsOf(vm);
}

const MACHINE_EVENTS: readonly (keyof MachineEvents)[] = ["exit", "unhandled"];

/** every exit kind, so that setExitHandler refuses a misspelt one (the Record keeps it complete) */
const EXIT_KIND_SET: Record<VmExitKind, true> = {
  io: true,
  mmio: true,
  hlt: true,
  shutdown: true,
  "fail-entry": true,
  "internal-error": true,
  "system-event": true,
  debug: true,
  intr: true,
  "irq-window-open": true,
  hypercall: true,
  cpuid: true,
  msr: true,
  unknown: true,
};
const EXIT_KINDS = Object.keys(EXIT_KIND_SET) as VmExitKind[];

/**
 * The loaders' options, field by field where a field is a plain value (the loaders check values
 * and structures such as `layout` and `modules` themselves, against the image).
 */
function checkLoadOptions<T extends object>(opts: T | undefined): T {
  const o = optionsArg("opts", opts) as Partial<LoadImageOptions & LinuxOptions>;
  for (const key of ["address", "entry", "stack", "acpiRsdp"] as const) {
    optional(o[key], `opts.${key}`, (a, v) => integerArg(a, v, 0, Number.MAX_SAFE_INTEGER));
  }
  optional(o.mode, "opts.mode", (a, v) => oneOfArg(a, v, ["real", "protected", "long"] as const));
  optional(o.format, "opts.format", (a, v) =>
    oneOfArg(a, v, ["auto", "flat", "elf", "multiboot", "linux", "bios"] as const),
  );
  optional(o.cmdline, "opts.cmdline", stringArg);
  optional(o.imageName, "opts.imageName", stringArg);
  optional(o.bootLoaderName, "opts.bootLoaderName", stringArg);
  optional(o.initrd, "opts.initrd", bytesArg);
  for (const key of ["layout", "modules", "e820"] as const) optional(o[key], `opts.${key}`, objectArg);
  return o as T;
}

/** Run limits as the loop takes them, checked here so a bad one names itself. */
function checkLimits(limits: RunLimits | undefined): RunLimits {
  const l = optionsArg("limits", limits);
  optional(l.timeoutMs, "limits.timeoutMs", limitArg);
  optional(l.maxExits, "limits.maxExits", limitArg);
  optional(l.maxInstructions, "limits.maxInstructions", limitArg);
  if (l.signal !== undefined && !(l.signal instanceof AbortSignal)) {
    throw new InvalidArgumentError(
      `limits.signal must be an AbortSignal, got ${describeValue(l.signal)}`,
      "limits.signal",
    );
  }
  return l;
}

/**
 * What addDevice needs of a device, checked before any range is claimed, so a device missing a
 * handler fails here rather than at the guest's first access.
 */
function checkDevice(device: unknown): void {
  const d = objectArg<Partial<Device>>("device", device);
  if (typeof d.name !== "string") {
    throw new InvalidArgumentError(
      `device.name must be a string, got ${describeValue(d.name)}`,
      "device.name",
    );
  }
  const ranges: unknown = d.ranges;
  if (!Array.isArray(ranges)) {
    throw new InvalidArgumentError(
      `${d.name}: device.ranges must be an array, got ${describeValue(ranges)}`,
      "device.ranges",
    );
  }
  ranges.forEach((r: unknown, i) => {
    const arg = `device.ranges[${i}]`;
    const range = objectArg<Record<string, unknown>>(arg, r);
    oneOfArg(`${arg}.space`, range.space, ["io", "mmio"] as const);
    integerArg(`${arg}.base`, range.base, 0, Number.MAX_SAFE_INTEGER);
    integerArg(`${arg}.length`, range.length, 1, Number.MAX_SAFE_INTEGER);
  });
  if (ranges.length > 0) {
    functionArg("device.read", d.read);
    functionArg("device.write", d.write);
  }
  optional(d.irq, "device.irq", (a, v) => integerArg(a, v, 0, 255));
  optional(d.attach, "device.attach", functionArg);
  optional(d.poll, "device.poll", functionArg);
}
