// Counting the process's eventfds, for tests that must not leave any behind.
import { readdirSync, readlinkSync } from "node:fs";

/** the process's open eventfds (libuv keeps some of its own: compare counts, not zero) */
export function eventfdCount(): number {
  let n = 0;
  for (const f of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${f}`) === "anon_inode:[eventfd]") n++;
    } catch {
      // closed while listed (the directory's own descriptor)
    }
  }
  return n;
}

/** whether descriptor `fd` is open on an eventfd */
export function isEventfd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[eventfd]";
  } catch {
    return false;
  }
}
