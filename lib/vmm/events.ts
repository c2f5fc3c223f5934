// The machine's events, typed: "exit" sees every VM exit after its handler ran (so "in" data is
// filled), "unhandled" every access to an unregistered port or MMIO address.

import type { VmExit } from "../types/exits.js";
import type { UnhandledAccess } from "./bus.js";

/** What the machine's "exit" event tells besides the exit itself. */
export interface ExitEventInfo {
  /** Index of the vCPU that exited. */
  vcpu: number;
  /** sequence number of the exit since the machine was created (0-based) */
  index: number;
  /** the port/MMIO access found no device or handler */
  unhandled: boolean;
}

/** The events `vm.on()`/`vm.once()` take, and their listeners' signatures. */
export interface MachineEvents {
  /** Every VM-exit, after its handler ran ("in" data is filled by then). Listening costs a call per exit. */
  exit: (exit: VmExit, info: ExitEventInfo) => void;
  /**
   * Every guest access to a port or MMIO address nothing is registered at (before strict mode ends the run).
   */
  unhandled: (access: UnhandledAccess) => void;
}

export class Emitter<E extends { [K in keyof E]: (...args: never[]) => void }> {
  readonly #listeners = new Map<keyof E, Set<E[keyof E]>>();

  on<K extends keyof E>(event: K, fn: E[K]): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof E>(event: K, fn: E[K]): void {
    this.#listeners.get(event)?.delete(fn);
  }

  has(event: keyof E): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of set) (fn as (...a: Parameters<E[K]>) => void)(...args);
  }
}
