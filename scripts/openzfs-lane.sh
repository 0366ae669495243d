#!/usr/bin/env bash
# openzfs-lane.sh: the OpenZFS lane of the test suite. Runs a focused set of integration tests
# in ONE guest on real kernel OpenZFS (scripts/openzfs-vm.sh builds it on first use, about 5
# minutes, then boots it in seconds), then prints each file's wall time in the guest.
#
#   scripts/openzfs-lane.sh [TEST_FILE...]     extra test files are added to the lane
#
# Needs root, and this checkout built with its node_modules (npm ci && npm run build): the guest
# has no network and sees the checkout at the same path. Wall-clock deadlines in the tests are
# scaled by ZDC_TIME_SCALE (default 10 here: everything runs about ten times slower under QEMU
# without KVM; see test/helpers/time.ts). Exit status: vitest's.
set -euo pipefail
cd "$(dirname "$0")/.."

# main() is read whole before it runs: updating the checkout during a run cannot derail it.
main() {
LANE=(
  test/openzfs/openzfs.test.ts              # xattrs and ACLs, overlay=off, zfs list -p/-j, a watch burst
  test/openzfs/clone.test.ts                # block cloning: probe, cloneTree + rsync, bclonesaved
  test/integration/safety-crash.test.ts     # SIGKILL at every step, then recover
  test/integration/safety-writers.test.ts   # live writers during the conversion
  test/integration/safety-race.test.ts      # the path made again at the instant of the mount (overlay=off)
  test/integration/publish.test.ts          # exports through the real exportfs
  test/integration/siege-mount.test.ts      # a link planted at the path before the mount; 0777/2775 roots refused
  test/openzfs/siege-remove.test.ts         # late entries caught up with their xattrs and POSIX ACLs
)
# The shared-root attack tests, once they exist (any test/integration/*shared-root*.test.ts).
for f in test/integration/*shared-root*.test.ts; do [ -e "$f" ] && LANE+=("$f"); done
LANE+=("$@")

[ -f dist/src/cli.js ] || { echo "openzfs-lane: build first (npm run build)" >&2; exit 2; }
OUT=$(mktemp -d /var/tmp/zdc-openzfs-lane.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
start=$SECONDS
set +e
scripts/openzfs-vm.sh -t "${ZDC_LANE_TIMEOUT:-3600}" -w "$OUT" \
  -e "ZDC_TIME_SCALE=${ZDC_TIME_SCALE:-10}" -e ZDC_ZFS=openzfs -e CI="${CI:-}" \
  -- node_modules/.bin/vitest run --config test/openzfs/vitest.config.ts \
     --reporter=verbose --reporter=json --outputFile="$OUT/report.json" "${LANE[@]}"
status=$?
set -e
if [ -f "$OUT/report.json" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const rel = (f) => f.slice(process.cwd().length + 1);
    console.log("openzfs lane, wall time per file in the guest:");
    let sum = 0;
    for (const t of r.testResults) {
      const s = (t.endTime - t.startTime) / 1000; sum += s;
      console.log(`  ${s.toFixed(1).padStart(7)} s  ${rel(t.name)}  ${t.status}`);
    }
    console.log(`  ${sum.toFixed(1).padStart(7)} s  all files; tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  ' "$OUT/report.json" || true
fi
echo "openzfs lane: $((SECONDS - start)) s in all (boot, tests, power-off); exit $status"
exit "$status"
}
main "$@"
exit $?
