// The host side of the VMCALL channel of examples/guests/hypercall.md, as a `nodevmm run --plugin`
// module:
//   nodevmm run examples/images/hypercall.bin --address 0x100000 --mode long \
//     --plugin dist/examples/plugins/hypercall.js
// On KVM the VMCALL reaches user space only as KVM_HC_MAP_GPA_RANGE with KVM_CAP_EXIT_HYPERCALL,
// which the KVM backend enables; kvm-pvm hosts never return from KVM_RUN on it (use --backend soft).
import type { NodevmmPlugin } from "../../lib/cli/plugins.js";
import { type ExitHandler, GuestMemoryError, type HypercallExit, type Machine } from "../../lib/index.js";

/** The channel's hypercall number (KVM's KVM_HC_MAP_GPA_RANGE, the one KVM lets out). */
export const CHANNEL_NR = 12n;
const ALL_ONES = (1n << 64n) - 1n;

/** op, arg0, arg1 of the request block at `gpa` -> the answer the guest gets in RAX. */
export function answer(vm: Machine, gpa: number): bigint {
  let op: bigint;
  let a: bigint;
  let b: bigint;
  try {
    op = vm.memory.readU64(gpa);
    a = vm.memory.readU64(gpa + 8);
    b = vm.memory.readU64(gpa + 16);
  } catch (e) {
    // a request block outside RAM is the guest's mistake, answered like an unknown operation
    if (e instanceof GuestMemoryError) return ALL_ONES;
    throw e;
  }
  if (op === 1n) return BigInt.asUintN(64, a + b);
  if (op === 2n) return BigInt.asUintN(64, a * b);
  return ALL_ONES;
}

/** Answers the channel's VMCALLs; any other hypercall goes to the handler that was there before. */
export function addHypercallChannel(vm: Machine): { calls: number } {
  const seen = { calls: 0 };
  const previous: ExitHandler<HypercallExit> | undefined = vm.setExitHandler("hypercall", (exit, ctx) => {
    if (exit.nr !== CHANNEL_NR) return previous?.(exit, ctx);
    seen.calls++;
    const block = exit.args[0] ?? 0n;
    exit.ret = block > BigInt(Number.MAX_SAFE_INTEGER) ? ALL_ONES : answer(vm, Number(block));
    return undefined;
  });
  return seen;
}

/** No options. */
const plugin: NodevmmPlugin = (vm, { options }) => {
  const keys = Object.keys(options);
  if (keys.length) throw new Error(`unknown option "${keys[0]}" (hypercall takes none)`);
  addHypercallChannel(vm);
};
export default plugin;
