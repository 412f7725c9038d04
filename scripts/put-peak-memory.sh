#!/usr/bin/env bash
# Peak resident memory of `kith file put` on a large file (default 1 GiB), next to the size of
# the file: the store streams item by item, so the peak should not grow with the file.
# Needs GNU time (`apt-get install time`). Usage: scripts/put-peak-memory.sh [BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
bytes=${1:-1073741824}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/kith
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c "$bytes" /dev/urandom > "$work/big"
/usr/bin/time -f '%M' -o "$work/rss" "$bin" --data "$work/data" file put "$work/big" >/dev/null
rss_kib=$(cat "$work/rss")
echo "file: $bytes bytes; peak RSS of kith file put: $((rss_kib / 1024)) MiB ($rss_kib KiB)"
/usr/bin/time -f '%M' -o "$work/rss" "$bin" --data "$work/data" file get \
  "$("$bin" --data "$work/data" file hash "$work/big")" -o "$work/out" >/dev/null
echo "peak RSS of kith file get: $(( $(cat "$work/rss") / 1024 )) MiB"
cmp "$work/big" "$work/out" && echo "round trip: identical"
