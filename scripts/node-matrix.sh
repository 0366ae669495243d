#!/usr/bin/env bash
# Runs the unit tests and the core integration tests under Node.js 22 and 24 too
# (the machine's own Node runs everything). The Node binaries come from the npm
# registry's node-linux-<arch> packages, cached under node_modules/.cache.
# NODE_MATRIX="22 24" picks the versions; NODE_MATRIX=none skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${NODE_MATRIX:-22 24}
[ "$versions" = none ] && exit 0
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "node-matrix: no Node packages for $(uname -m); skipped" >&2; exit 0 ;;
esac
cache=node_modules/.cache/node-matrix
mkdir -p "$cache"
for v in $versions; do
  dir="$cache/node-$v"
  if [ ! -x "$dir/package/bin/node" ]; then
    tgz=$(cd "$cache" && npm pack --silent "node-linux-$arch@$v" | tail -1)
    rm -rf "$dir" && mkdir -p "$dir" && tar xzf "$cache/$tgz" -C "$dir" && rm -f "$cache/$tgz"
  fi
  bin=$(cd "$dir/package/bin" && pwd)
  echo "node-matrix: Node $("$bin/node" --version)" >&2
  PATH="$bin:$PATH" node node_modules/vitest/vitest.mjs run --reporter=dot \
    test/unit test/integration/convert.test.ts test/integration/cli.test.ts test/integration/syslog.test.ts
done
