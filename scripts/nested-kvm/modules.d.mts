export interface ModuleDep {
  path: string;
  deps: string[];
}
export const NESTED_MODULES: readonly string[];
export const LINUX_LANE_MODULES: readonly string[];
export const WANTED_MODULES: readonly string[];
export function moduleName(path: string): string;
export function parseModulesDep(text: string): Map<string, ModuleDep>;
export function parseModulesBuiltin(text: string): Set<string>;
export function resolveLoadOrder(
  dep: Map<string, ModuleDep>,
  builtin: Set<string>,
  wanted: readonly string[],
): { name: string; path: string }[];
