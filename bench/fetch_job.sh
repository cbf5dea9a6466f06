#!/usr/bin/env bash
# fetch_job.sh h1|h2 — run `crawler fetch` the way the shared harness's crawl.sh expects: URLS and
# OUT_DIR come from the environment (SUMS, CA, CONCURRENCY optional); files go to OUT_DIR. Our
# manifest and state are moved next to OUT_DIR afterwards so the harness counts only the files.
set -uo pipefail
proto=${1:-h2}
http2=$([ "$proto" = h2 ] && echo true || echo false)
state=$OUT_DIR.state
rm -rf "$state"
job=$(mktemp --suffix=.yaml)
cat >"$job" <<YAML
name: bench-fetch-$proto
limits: {concurrency: ${CONCURRENCY:-16}, per_host: {concurrency: ${CONCURRENCY:-16}, rate: 1000000}}
http: {http2: $http2, ca_bundle: "${CA:?}"}
robots: {obey: false}
output: {dir: "$OUT_DIR"}
logging: {level: warning, format: json}
YAML
"${CRAWLER:-crawler}" fetch "$URLS" --job "$job" ${SUMS:+--checksums "$SUMS"} --no-progress >"$OUT_DIR.summary.txt"
rc=$?
mkdir -p "$state"
mv "$OUT_DIR"/manifest.jsonl "$OUT_DIR"/state.* "$OUT_DIR.summary.txt" "$state"/
rmdir "$OUT_DIR/.tmp" "$OUT_DIR/.partial" 2>/dev/null
rm -f "$job"
ok=$(grep -c '"outcome":"ok"' "$state/manifest.jsonl")
echo "manifest: $ok ok of $(wc -l <"$state/manifest.jsonl") lines" >&2
exit $rc
