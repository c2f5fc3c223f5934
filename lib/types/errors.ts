// The base of every error nodevmm raises on purpose. It sits in types/ (which every layer may import)
// so that kvm/, devices/, boot/ and vmm/ errors share it without importing vmm/.

/**
 * An error nodevmm raised on purpose: `code` is a stable string (`ERR_VMM_...`) to branch on, as
 * Node's own errors carry one; `name` is the class's name, for people. `instanceof VmmError` also
 * holds for the errors that are RangeErrors too (`VmmRangeError`: DeviceConfigError and the
 * KVM layer's range errors), which JavaScript's single inheritance cannot give by `extends` alone.
 */
export class VmmError extends Error {
  /** Always "VmmError" (the class name, for people). */
  override name = "VmmError";
  /** stable across releases: compare this, not the message */
  readonly code: string = "ERR_VMM";
}

/**
 * A VmmError that is also a RangeError: the classes whose users catch them as RangeError (a device
 * option or a KVM memory slot out of range) keep that, and are VmmErrors with a `code` as well.
 */
export class VmmRangeError extends RangeError {
  /** Always "VmmRangeError" (the class name, for people). */
  override name = "VmmRangeError";
  /** stable across releases: compare this, not the message */
  readonly code: string = "ERR_VMM_RANGE";
}

const ordinaryInstanceOf = Function.prototype[Symbol.hasInstance];

// Defined after the class, not as a static member: a static [Symbol.hasInstance] would be inherited
// by every subclass in TypeScript's types too, and narrow `e instanceof BusConflictError` to VmmError.
// At run time subclasses inherit it as well, so only VmmError itself widens the test.
Object.defineProperty(VmmError, Symbol.hasInstance, {
  value(this: unknown, value: unknown): boolean {
    if (this === VmmError && ordinaryInstanceOf.call(VmmRangeError, value)) return true;
    return ordinaryInstanceOf.call(this, value);
  },
});
