// The soft vCPU's x87/SSE state as the tests set and check it: through the vCPU's own snapshot
// calls (captureSoftState/applySoftState), which reach it in its worker thread as on the machine's.

import type { ExtendedState } from "../../lib/cpu/guest-cpu.js";
import { softSavedStateOf } from "../../lib/snapshot/vcpu-state.js";
import type { Machine } from "../../lib/vmm/machine.js";

type Fpu = { -readonly [K in keyof ExtendedState]: ExtendedState[K] };

function access(vm: Machine) {
  const b = softSavedStateOf(vm.vcpu(0).backend);
  if (!b) throw new Error("not a soft vCPU");
  return b;
}

const b64 = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
function unb64<T>(text: string, make: (b: ArrayBuffer) => T): T {
  const bytes = Buffer.from(text, "base64");
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return make(copy);
}

export function softFpu(vm: Machine): Fpu {
  const { soft } = access(vm).captureSoftState();
  return {
    fpu: unb64(soft.fpu, (b) => new Float64Array(b)),
    xmm: unb64(soft.xmm, (b) => new Int32Array(b)),
    fpuTop: soft.fpuTop,
    fpuTag: soft.fpuTag,
    fpuCw: soft.fpuCw,
    fpuSw: soft.fpuSw,
    mxcsr: soft.mxcsr,
  };
}

export function setSoftFpu(vm: Machine, x: Partial<Fpu>): void {
  const b = access(vm);
  const { soft } = b.captureSoftState();
  const { fpu, xmm, ...rest } = x;
  b.applySoftState({
    soft: { ...soft, ...rest, ...(fpu ? { fpu: b64(fpu) } : {}), ...(xmm ? { xmm: b64(xmm) } : {}) },
  });
}
