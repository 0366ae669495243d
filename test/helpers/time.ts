/**
 * Wall-clock deadlines in tests, scaled for slow machines. The OpenZFS lane runs in an emulated
 * guest (QEMU without KVM) where a process start or a zfs command takes about ten times longer,
 * and sets ZDC_TIME_SCALE=10 (scripts/openzfs-lane.sh); everywhere else the factor is 1.
 */
function readScale(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 1;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1 || n > 100) throw new Error(`ZDC_TIME_SCALE=${raw}: want a number from 1 to 100`);
  return n;
}

export const TIME_SCALE = readScale(process.env.ZDC_TIME_SCALE);

/** `ms` milliseconds of wall clock, scaled by ZDC_TIME_SCALE. */
export function scaled(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}
