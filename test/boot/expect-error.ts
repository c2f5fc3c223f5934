import { expect } from "vitest";
import { GuestImageError } from "../../lib/boot/index.js";
import { isFilled } from "./fixtures.js";

/** Runs a load that must fail with GuestImageError on `field` at file `offset`, and checks that guest
 * memory (filled with `fill` beforehand) was not touched. */
export function expectImageError(
  load: () => unknown,
  bytes: Uint8Array,
  field: string,
  offset: number,
  message?: RegExp,
  fill = 0xaa,
): GuestImageError {
  let caught: unknown;
  try {
    load();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(GuestImageError);
  const err = caught as GuestImageError;
  expect({ field: err.field, offset: err.offset }).toEqual({ field, offset });
  expect(err.message).toContain(`${field} at file offset 0x${offset.toString(16)}`);
  if (message) expect(err.message).toMatch(message);
  expect(isFilled(bytes, fill)).toBe(true);
  return err;
}
