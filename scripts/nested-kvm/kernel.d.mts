export interface CachedKernel {
  release: string;
  package: string;
  modules: string[];
  /** the Linux lane's modules in load order (a subset of modules) */
  linuxModules: string[];
  dir: string;
  vmlinuz: string;
  fresh: boolean;
}
export function ensureKernel(opts: {
  cacheRoot: string;
  depmod: string;
  log: (msg: string) => void;
}): CachedKernel;
export function bootImage(kernel: { dir: string; vmlinuz: string }): {
  path: string;
  pvh: boolean;
  why?: string;
};
