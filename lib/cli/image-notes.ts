// What `nodevmm run --verbose` says about an image that is probably not what the user meant: a text
// file (a script, a README, a hex dump) loaded as a flat binary, or a boot sector run in protected or
// long mode. The loader takes both as asked; the note says why the guest may do nothing sensible.

/** A whole-sector sample is enough to tell text from code: real code has control bytes everywhere. */
const SAMPLE = 4096;

function looksLikeText(image: Uint8Array): boolean {
  const n = Math.min(image.length, SAMPLE);
  if (n === 0) return false;
  let text = 0;
  for (let i = 0; i < n; i++) {
    const b = image[i]!;
    // printable ASCII, tab, LF, CR, and UTF-8 bytes; NUL and other control bytes are machine code's
    if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d || b >= 0x80) text++;
  }
  return text === n && image.subarray(0, n).includes(0x0a);
}

const hasBootSignature = (image: Uint8Array): boolean =>
  image.length >= 512 && image[510] === 0x55 && image[511] === 0xaa;

/** Lines for --verbose about what the image seems to be, when that does not fit how it is run. */
export function imageNotes(path: string, image: Uint8Array, format: string, mode?: string): string[] {
  const notes: string[] = [];
  if (format !== "flat") return notes;
  if (looksLikeText(image)) {
    notes.push(`${path} looks like text, not machine code; it runs as a flat binary all the same`);
  } else if (hasBootSignature(image) && mode !== undefined && mode !== "real") {
    notes.push(
      `${path} ends its first sector with the boot signature 0x55AA: a real-mode boot sector? --mode ${mode} runs it as ${mode === "long" ? "64" : "32"}-bit code`,
    );
  }
  if (image.length === 0) notes.push(`${path} is empty`);
  return notes;
}
