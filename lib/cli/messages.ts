// What the command says about an error: the message alone for errors nodevmm (or a plugin, or the
// snapshot and gdb layers) raised on purpose, which are written for people; the class name as well
// only for the engine's own errors (TypeError, RangeError, ...), which mean a bug somewhere and are
// worth reporting as they are.

import { VmmError } from "../types/errors.js";

const ENGINE_ERRORS = new Set<unknown>([
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
  AggregateError,
]);

/** One line for a person: no class names unless the error is an engine error (a bug). */
export function messageOf(e: unknown): string {
  if (e instanceof VmmError) return e.message;
  if (e instanceof Error) {
    return ENGINE_ERRORS.has(Object.getPrototypeOf(e)?.constructor) ? `${e.name}: ${e.message}` : e.message;
  }
  return String(e);
}

/** The guest's output and nodevmm's own lines share a terminal: keep nodevmm's on a line of its own. */
export class LineTracker {
  #midLine = false;

  /** wraps a stream the guest writes to, noting whether its last byte ended a line */
  track<W extends { write(chunk: Uint8Array): unknown }>(out: W): { write(chunk: Uint8Array): unknown } {
    return {
      write: (chunk: Uint8Array) => {
        if (chunk.length > 0) this.#midLine = chunk[chunk.length - 1] !== 0x0a;
        return out.write(chunk);
      },
    };
  }

  /** "\n" when the guest left its line open (once), else "" */
  takeBreak(): string {
    if (!this.#midLine) return "";
    this.#midLine = false;
    return "\n";
  }
}
