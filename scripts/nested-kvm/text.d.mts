export function shQuote(word: string | number): string;
export function stripAnsi(text: string): string;
export function vitestSummary(output: string): string[];
export function parseMarkers(consoleText: string): { kind: "stage" | "fail"; value: string }[];
export interface TestCounts {
  filesFailed: number;
  executed: number;
  passed: number;
  failed: number;
  skipped: number;
  total: number;
}
export function testCounts(summary: string[]): TestCounts | undefined;
export function countsLine(counts: TestCounts, where: string): string;
