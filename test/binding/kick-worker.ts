// A bare worker thread that kicks a vCPU through a binding's KickTarget, as the watchdog does, to
// test the binding contract without lib/vmm.

import { Worker } from "node:worker_threads";
import type { KickTarget } from "../../lib/kvm/binding-api.js";
import { KOFFI_KICKER_SOURCE } from "../../lib/kvm/koffi-binding.js";

const SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
${KOFFI_KICKER_SOURCE}
const t = workerData.target;
const kicker = t.binding === "koffi"
  ? koffiKicker(t)
  : { kick: () => require(t.addonPath).kick(t.vcpuFd), close() {} };
parentPort.postMessage("ready");
parentPort.on("message", (m) => {
  if (typeof m === "number") setTimeout(() => kicker.kick(), m);
  else if (m === "kick") {
    kicker.kick();
    parentPort.postMessage("kicked");
  } else {
    kicker.close();
    parentPort.close();
  }
});
`;

export interface KickWorker {
  /** kicks after `delayMs` (timed in the worker, so it fires while this thread is in KVM_RUN) */
  kickAfter(delayMs: number): void;
  /** kicks now and resolves once the kick is done */
  kickNow(): Promise<void>;
  close(): Promise<void>;
}

export async function startKickWorker(target: KickTarget): Promise<KickWorker> {
  const worker = new Worker(SOURCE, { eval: true, workerData: { target } });
  await new Promise<void>((resolve, reject) => {
    worker.once("message", () => resolve());
    worker.once("error", reject);
  });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  return {
    kickAfter: (ms) => worker.postMessage(ms),
    kickNow: () =>
      new Promise<void>((resolve) => {
        worker.once("message", () => resolve());
        worker.postMessage("kick");
      }),
    close: async () => {
      worker.postMessage("close");
      await exited;
    },
  };
}
