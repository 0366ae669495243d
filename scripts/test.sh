#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine, as root: installs and
# starts what is needed, builds, type-checks, lints, runs the core tests under
# Node 22 and 24, and runs every test under the machine's Node (unit tests and
# integration tests against real ZFS, rsync, exportfs, incron, syslog) on zfs-fuse, then the
# OpenZFS lane: the safety and OpenZFS-specific integration tests again, in a QEMU guest on real
# kernel OpenZFS 2.3 (scripts/openzfs-lane.sh; the guest is built on first use, 5-10 minutes).
# ZDC_OPENZFS_LANE=0 leaves the lane out; given test files (scripts/test.sh FILE...) run on
# zfs-fuse only. Exit status: the first lane's failure, else the second's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent build
npm run --silent typecheck
npm run --silent lint
# Node 22 and 24 as well as the machine's own (20): the unit tests and the core integration tests.
bash scripts/node-matrix.sh
report=$(mktemp /tmp/zdc-vitest.XXXXXX.json)
start=$SECONDS
set +e
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
status=$?
set -e
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`zfs-fuse lane: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
  // The failures again, a line each, where the end of a long log shows them.
  for (const file of r.testResults) {
    const rel = require("path").relative(process.cwd(), file.name);
    const failed = file.assertionResults.filter((t) => t.status === "failed");
    for (const t of failed) console.log(`  FAILED ${rel} > ${t.fullName}: ${String(t.failureMessages[0] ?? "").split("\n")[0].slice(0, 200)}`);
    if (failed.length === 0 && file.status === "failed") console.log(`  FAILED ${rel}: ${String(file.message ?? "").split("\n")[0].slice(0, 200)}`);
  }
' "$report" || true
rm -f "$report"
echo "zfs-fuse lane: $((SECONDS - start)) s"

# The OpenZFS lane (scripts/openzfs-lane.sh: a focused set of integration tests in one QEMU guest
# on real kernel OpenZFS). It runs even when the first lane failed: what differs between the two
# ZFS is worth knowing. Its guest is killed after ZDC_LANE_TIMEOUT seconds (55 minutes here: the
# lane took about 20 on 2 cores before issue 19 added its attack files; 55 keeps the whole
# command under 90), so a hang cannot take the whole CI budget.
lane=0
if [ $# -eq 0 ] && [ "${ZDC_OPENZFS_LANE:-1}" != 0 ]; then
  set +e
  ZDC_LANE_TIMEOUT=${ZDC_LANE_TIMEOUT:-3300} bash scripts/openzfs-lane.sh
  lane=$?
  set -e
  [ $lane -ne 0 ] && echo "openzfs lane: FAILED (exit $lane)" >&2
fi
[ $status -ne 0 ] && exit $status
exit $lane
