// `nodevmm run --plugin MODULE[,key=value...]`: host code from an ES module, given the Machine
// before the guest runs, so that guests needing a device, port/MMIO handlers or exit handlers
// written in JavaScript run from a shell. The module's default export is called with the machine
// and a context holding the options. Every way a module can fail before the run is a PluginError,
// which the CLI reports in one line with status 2.

import { existsSync, statSync } from "node:fs";
import { basename, extname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { VmmError } from "../types/errors.js";
import type { Machine } from "../vmm/machine.js";

/** A --plugin module that is missing, fails to load or to register, or throws. Status 2. */
export class PluginError extends VmmError {
  override name = "PluginError";
  override readonly code: string = "ERR_VMM_PLUGIN";
}

/** What `nodevmm run --plugin MODULE[,key=value...]` hands a plugin's default export beside the machine. */
export interface PluginContext {
  /** `key=value` pairs after the module path; a key given without `=` maps to "" */
  readonly options: Readonly<Record<string, string>>;
  /** the text after the path's comma, as typed (`,,` escapes kept) */
  readonly optionText: string;
  /** absolute path of the module */
  readonly path: string;
  /** one line to stderr, prefixed with the CLI's and the module's names */
  log(line: string): void;
}

/** What a plugin module exports as default: registers its devices/handlers on `vm`. */
export type NodevmmPlugin = (vm: Machine, context: PluginContext) => void | Promise<void>;

export interface PluginSpec {
  /** the argument as given */
  spec: string;
  /** the module path as given (relative paths resolve from the working directory) */
  path: string;
  options: Record<string, string>;
  optionText: string;
}

/**
 * Splits at commas; `,,` stands for a literal comma (QEMU's escape), so paths and values may hold
 * commas.
 */
function splitEscaped(text: string): string[] {
  const items: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ",") {
      if (text[i + 1] === ",") {
        cur += ",";
        i++;
        continue;
      }
      items.push(cur);
      cur = "";
      continue;
    }
    cur += c;
  }
  items.push(cur);
  return items;
}

/** "PATH[,key=value|key...]" -> its parts; throws PluginError naming what is malformed. */
export function parsePluginSpec(spec: string): PluginSpec {
  const [path = "", ...items] = splitEscaped(spec);
  if (path.trim() === "") {
    throw new PluginError(`--plugin "${spec}": no module path (expected PATH[,key=value...])`);
  }
  const options: Record<string, string> = Object.create(null);
  for (const item of items) {
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq);
    if (key === "") throw new PluginError(`--plugin "${spec}": option "${item}" has no name`);
    if (key in options) throw new PluginError(`--plugin "${spec}": option "${key}" given twice`);
    options[key] = eq < 0 ? "" : item.slice(eq + 1);
  }
  const optionText = items.length === 0 ? "" : spec.slice(indexAfterPath(spec));
  return { spec, path, options, optionText };
}

// The path may contain ",," escapes, so the first single comma is found by walking the pairs.
function indexAfterPath(spec: string): number {
  for (let i = 0; i < spec.length; i++) {
    if (spec[i] !== ",") continue;
    if (spec[i + 1] === ",") {
      i++;
      continue;
    }
    return i + 1;
  }
  return spec.length;
}

export interface LoadedPlugin extends PluginSpec {
  /** absolute path of the module */
  resolved: string;
  /** a short name for messages: the file name */
  name: string;
  register: NodevmmPlugin;
}

const errorText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/** Imports the module of `spec` (resolved from `cwd`) and checks that it exports a function. */
export async function loadPlugin(spec: PluginSpec, cwd = process.cwd()): Promise<LoadedPlugin> {
  const resolved = resolve(cwd, spec.path);
  const where = `--plugin ${spec.path}`;
  if (!existsSync(resolved)) throw new PluginError(`${where}: no such file (${resolved})`);
  if (!statSync(resolved).isFile()) throw new PluginError(`${where}: not a file (${resolved})`);
  const ext = extname(resolved);
  if (ext === ".ts" || ext === ".mts" || ext === ".cts") {
    throw new PluginError(
      `${where}: a TypeScript source; give the compiled module (npx tsc -p tsconfig.json puts examples/plugins/*.ts in dist/examples/plugins/*.js)`,
    );
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (e) {
    throw new PluginError(`${where}: the module failed to load: ${errorText(e)}`);
  }
  const register = mod.default;
  if (typeof register !== "function") {
    const names = Object.keys(mod).filter((k) => k !== "default");
    throw new PluginError(
      `${where}: the module has no default export that is a function (export default function (vm, context) { ... })${
        names.length ? `; it exports ${names.join(", ")}` : ""
      }`,
    );
  }
  return { ...spec, resolved, name: basename(resolved), register: register as NodevmmPlugin };
}

/** Calls the plugin on the machine; whatever it throws (or rejects with) becomes a PluginError. */
export async function applyPlugin(
  vm: Machine,
  plugin: LoadedPlugin,
  log: (line: string) => void,
): Promise<void> {
  const context: PluginContext = {
    options: Object.freeze(Object.assign(Object.create(null), plugin.options)),
    optionText: plugin.optionText,
    path: plugin.resolved,
    log: (line) => log(`${plugin.name}: ${line}`),
  };
  try {
    await plugin.register(vm, context);
  } catch (e) {
    throw new PluginError(`--plugin ${plugin.path}: ${errorText(e)}`);
  }
}
