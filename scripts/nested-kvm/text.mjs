// Text helpers shared by the host side: quoting for the guest's shell scripts, and picking vitest's
// summary out of its output.

/** Quotes one word for a POSIX shell (dash, busybox sh): single quotes, with ' written as '\''. */
export function shQuote(word) {
  const s = String(word);
  if (s.includes("\0"))
    throw new TypeError(`cannot pass a NUL byte to the guest shell: ${JSON.stringify(s)}`);
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ESC is the point
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007]*\u0007/g;

export function stripAnsi(text) {
  return text.replace(ANSI, "");
}

/** vitest's closing block ("Test Files", "Tests", "Errors", "Start at", "Duration"), ANSI stripped. */
export function vitestSummary(output) {
  const lines = stripAnsi(output).replaceAll("\r", "").split("\n");
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/^\s*Test Files\s/.test(lines[i])) {
      start = i;
      break;
    }
  }
  if (start < 0) return [];
  const out = [];
  for (let i = start; i < lines.length; i++) {
    const l = lines[i];
    if (/^\s*(Test Files|Tests|Errors|Type Errors|Snapshots|Start at|Duration)\s/.test(l)) out.push(l.trim());
    else if (l.trim() !== "") break;
  }
  return out;
}

/**
 * Stage markers the guest's /init prints on the console: "@@nkvm:stage:<name>" and
 * "@@nkvm:fail:<message>". Returns them in order of appearance.
 */
export function parseMarkers(consoleText) {
  const out = [];
  for (const m of consoleText.matchAll(/@@nkvm:(stage|fail):([^\r\n]*)/g))
    out.push({ kind: m[1], value: m[2] });
  return out;
}
