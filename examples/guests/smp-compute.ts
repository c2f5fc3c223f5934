// What examples/guests/smp.c's `compute` test prints, computed on the host: the guest's mix()
// (lowbias32) summed over i < n, mod 2^32. The tests and bench/smp check the guest's sum with it.

export function computeSum(n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let x = i;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d);
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b);
    x ^= x >>> 16;
    sum = (sum + (x >>> 0)) >>> 0;
  }
  return sum;
}
