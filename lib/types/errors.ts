// The base of every error nodevmm raises on purpose. It sits in types/ (which every layer may import)
// so that boot/ and vmm/ errors share it without boot/ importing vmm/.

/**
 * An error nodevmm raised on purpose: `code` is a stable string (`ERR_VMM_...`) to branch on, as
 * Node's own errors carry one; `name` is the class's name, for people.
 */
export class VmmError extends Error {
  override name = "VmmError";
  /** stable across releases: compare this, not the message */
  readonly code: string = "ERR_VMM";
}
