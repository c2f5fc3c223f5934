// Kvm: the /dev/kvm system fd, first link of the Kvm -> KvmVm -> KvmVcpu chain (as rust-vmm's
// kvm-ioctls). Closing an owner closes what it owns; using a closed object throws KvmClosedError.

import { type BindingKind, type KvmBinding, loadBinding } from "./binding.js";
import { KVM_API_VERSION, KVM_CAP, MAX_CPUID_ENTRIES } from "./constants.js";
import { KvmClosedError, KvmError, KvmUnavailableError } from "./errors.js";
import {
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_VCPU_MMAP_SIZE,
} from "./ioctls.js";
import { type CpuidEntry, cpuidBuffer, readCpuid } from "./structs.js";
import { asKvmError, ioctl } from "./syscall.js";
import { KvmVm } from "./vm.js";

/** Options of Kvm.open() and probeKvm(). */
export interface KvmOpenOptions {
  /** a binding object, or which one to load (default: NODEVMM_BINDING, else addon, else koffi) */
  binding?: KvmBinding | BindingKind;
  /** default: NODEVMM_KVM_DEVICE, else /dev/kvm */
  path?: string;
}

const MISSING = new Set(["ENOENT", "ENXIO", "ENODEV", "ENOTDIR"]);
const PERMISSION = new Set(["EACCES", "EPERM", "EROFS"]);

/**
 * The /dev/kvm system file descriptor, first link of the Kvm, KvmVm, KvmVcpu chain (as rust-vmm's
 * kvm-ioctls): Kvm.open() opens it, createVm() makes VMs. Closing an owner closes what it owns; a closed
 * object throws KvmClosedError.
 */
export class Kvm {
  /** The system-call binding in use (the addon, or koffi over libc). */
  readonly binding: KvmBinding;
  /** KVM_GET_API_VERSION's answer (12 on every kernel KVM supports). */
  readonly apiVersion: number;
  #fd: number;
  readonly #vms = new Set<KvmVm>();

  private constructor(binding: KvmBinding, fd: number, apiVersion: number) {
    this.binding = binding;
    this.#fd = fd;
    this.apiVersion = apiVersion;
  }

  /** Opens /dev/kvm. Throws KvmUnavailableError ("missing" | "permission" | "api-version" | "no-binding"). */
  static open(opts: KvmOpenOptions = {}): Kvm {
    const binding = typeof opts.binding === "object" ? opts.binding : loadBinding(opts.binding);
    const path = opts.path ?? (process.env.NODEVMM_KVM_DEVICE || "/dev/kvm");
    let fd: number;
    try {
      fd = binding.open(path);
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      if (MISSING.has(code)) {
        throw new KvmUnavailableError(
          "missing",
          `${path} does not exist (${code})`,
          "KVM needs hardware virtualization and the kvm module",
        );
      }
      if (PERMISSION.has(code)) {
        throw new KvmUnavailableError(
          "permission",
          `no permission to open ${path} (${code})`,
          "add your user to the kvm group (sudo usermod -aG kvm $USER) and log in again",
        );
      }
      throw asKvmError(e);
    }
    let version: number;
    try {
      version = binding.ioctl(fd, KVM_GET_API_VERSION);
    } catch (e) {
      binding.close(fd);
      throw asKvmError(e);
    }
    if (version !== KVM_API_VERSION) {
      binding.close(fd);
      throw new KvmUnavailableError(
        "api-version",
        `${path} speaks KVM API version ${version}, nodevmm needs ${KVM_API_VERSION}`,
        undefined,
        version,
      );
    }
    return new Kvm(binding, fd, version);
  }

  /** The file descriptor; throws KvmClosedError after close(). */
  get fd(): number {
    if (this.#fd < 0) throw new KvmClosedError("Kvm");
    return this.#fd;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** KVM_CHECK_EXTENSION on the system fd: 0 when unsupported, else a capability-specific value. */
  checkExtension(cap: number): number {
    return ioctl(this.binding, this.fd, KVM_CHECK_EXTENSION, cap);
  }

  /**
   * The vCPU limits of this KVM (Documentation/virt/kvm/api.rst, KVM_CREATE_VCPU): `recommended`
   * is KVM_CAP_NR_VCPUS (the host's CPU count; 4 when the capability is missing), `max` is
   * KVM_CAP_MAX_VCPUS (`recommended` when missing). KVM_CREATE_VCPU refuses ids past `max`.
   */
  vcpuLimits(): { recommended: number; max: number } {
    const recommended = this.checkExtension(KVM_CAP.NR_VCPUS) || 4;
    const max = this.checkExtension(KVM_CAP.MAX_VCPUS) || recommended;
    return { recommended, max };
  }

  /** Size of the kvm_run mapping of each vCPU. */
  vcpuMmapSize(): number {
    return ioctl(this.binding, this.fd, KVM_GET_VCPU_MMAP_SIZE);
  }

  /** KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can give a guest. */
  getSupportedCpuid(): CpuidEntry[] {
    const dv = cpuidBuffer(MAX_CPUID_ENTRIES);
    ioctl(this.binding, this.fd, KVM_GET_SUPPORTED_CPUID, dv);
    return readCpuid(dv);
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs KVM_GET_MSRS/KVM_SET_MSRS handle. */
  getMsrIndexList(): number[] {
    let n = 256;
    for (;;) {
      const dv = new DataView(new ArrayBuffer(4 + 4 * n));
      dv.setUint32(0, n, true);
      try {
        ioctl(this.binding, this.fd, KVM_GET_MSR_INDEX_LIST, dv);
      } catch (e) {
        // E2BIG: the kernel wrote the count it needs into nmsrs
        if (e instanceof KvmError && e.code === "E2BIG" && dv.getUint32(0, true) > n) {
          n = dv.getUint32(0, true);
          continue;
        }
        throw e;
      }
      const count = dv.getUint32(0, true);
      const out: number[] = [];
      for (let i = 0; i < count; i++) out.push(dv.getUint32(4 + 4 * i, true));
      return out;
    }
  }

  /** KVM_CREATE_VM. */
  createVm(): KvmVm {
    const fd = createVmFd(this.binding, this.fd);
    const vm = new KvmVm(this, fd, () => this.#vms.delete(vm));
    this.#vms.add(vm);
    return vm;
  }

  /** Closes every VM made from this Kvm, then the system fd. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    for (const vm of [...this.#vms]) vm.close();
    const fd = this.#fd;
    this.#fd = -1;
    this.binding.close(fd);
  }
}

/** What probeKvm() finds. */
export interface KvmProbe {
  /** Whether a VM and a vCPU could be made. */
  usable: boolean;
  /** Why not, when not: missing device, permission, API version, binding. */
  reason?: string;
  /** KVM_GET_API_VERSION, when /dev/kvm opened. */
  apiVersion?: number;
  /** The binding that was used. */
  binding?: BindingKind;
}

/** Whether KVM can be used here, and if not why (never throws). */
export function probeKvm(opts: KvmOpenOptions = {}): KvmProbe {
  let kvm: Kvm | undefined;
  try {
    kvm = Kvm.open(opts);
    const vm = kvm.createVm();
    vm.close();
    return { usable: true, apiVersion: kvm.apiVersion, binding: kvm.binding.kind };
  } catch (e) {
    const reason = e instanceof KvmUnavailableError ? `${e.reason}: ${e.message}` : (e as Error).message;
    return e instanceof KvmUnavailableError && e.apiVersion !== undefined
      ? { usable: false, reason, apiVersion: e.apiVersion }
      : { usable: false, reason };
  } finally {
    kvm?.close();
  }
}

/** Attempts at KVM_CREATE_VM before an EINTR is reported (each is a signal that arrived meanwhile). */
const CREATE_VM_ATTEMPTS = 100;

/**
 * KVM_CREATE_VM, again while it fails with EINTR: the kernel gives up making the VM when a signal
 * is pending (a profiler's SIGPROF, the kicker's signal) and nothing was created, so it is retried
 * as QEMU's kvm_init does.
 */
function createVmFd(binding: KvmBinding, systemFd: number): number {
  for (let attempt = 1; ; attempt++) {
    try {
      return ioctl(binding, systemFd, KVM_CREATE_VM, 0);
    } catch (e) {
      if (!(e instanceof KvmError) || e.code !== "EINTR" || attempt >= CREATE_VM_ATTEMPTS) throw e;
    }
  }
}
