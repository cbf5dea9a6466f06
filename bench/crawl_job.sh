#!/usr/bin/env bash
# crawl_job.sh h1|h2 — run our crawler the way the shared harness's crawl.sh expects:
# START_URL and OUT_DIR come from the environment; bodies go under OUT_DIR. Our manifest and
# state are moved next to OUT_DIR afterwards so the harness counts only bodies. PROCESSES=N runs
# N fetch worker processes (default 1: everything in one process).
set -euo pipefail
proto=${1:-h2}
http2=$([ "$proto" = h2 ] && echo true || echo false)
state=$OUT_DIR.state
rm -rf "$state"
job=$(mktemp --suffix=.yaml)
cat >"$job" <<YAML
name: bench-$proto
seeds: ["$START_URL"]
scope: {query: drop}
limits: {concurrency: ${CONCURRENCY:-64}, per_host: {concurrency: ${CONCURRENCY:-64}, rate: 1000000}}
http: {http2: $http2, ca_bundle: "${CA:-$(dirname "$0")/.work/harness/.work/tls/ca.pem}"}
robots: {obey: ${ROBOTS:-true}}
output: {dir: "$OUT_DIR"}
logging: {level: warning, format: json}
YAML
"${CRAWLER:-crawler}" crawl "$job" --no-progress --processes "${PROCESSES:-1}" >/dev/null
rc=$?
mkdir -p "$state"
mv "$OUT_DIR"/manifest.jsonl "$OUT_DIR"/state.* "$state"/
rmdir "$OUT_DIR/.tmp"
rm -f "$job"
ok=$(grep -c '"outcome":"ok"' "$state/manifest.jsonl")
echo "manifest: $ok ok of $(wc -l <"$state/manifest.jsonl") lines" >&2
exit $rc
