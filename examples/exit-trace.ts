// Every VM exit, as the loop sees it, on either backend: `node dist/examples/exit-trace.js [soft|kvm]`.
// On the soft backend each line also carries the VMX exit reason, qualification and instruction length.
import { readFileSync } from "node:fs";
import { type BackendRequest, createMachine, formatExit } from "../lib/index.js";
import { imagePath } from "./paths.js";

const backend = (process.argv[2] ?? "auto") as BackendRequest;
const vm = await createMachine({ memoryMiB: 64, backend });
vm.io.onOut(0x3f8, () => {}, 8); // swallow the UART's bytes: this example shows exits, not output
vm.on("exit", (exit, info) => {
  console.log(formatExit(exit, { index: info.index, rip: vm.vcpu(info.vcpu).getRegs().rip }));
});
vm.loadFlat(readFileSync(imagePath("real-hello.bin")), { address: 0x7c00, mode: "real" });
const result = await vm.run({ timeoutMs: 10_000, maxExits: 200 });
console.log(`[${vm.backendInfo.kind}] ${result.reason} after ${result.exits} exits`);
vm.close();
