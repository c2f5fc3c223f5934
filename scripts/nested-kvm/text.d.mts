export function shQuote(word: string | number): string;
export function stripAnsi(text: string): string;
export function vitestSummary(output: string): string[];
export function parseMarkers(consoleText: string): { kind: "stage" | "fail"; value: string }[];
