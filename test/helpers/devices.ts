/** Device numbers as tests take them apart. */

/** Major and minor of a device number as stat reports it (glibc's gnu_dev_major/minor; the inverse of makeDev). */
export function devMajorMinor(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn & 0xffffffffn));
  return { major, minor };
}
