#!/usr/bin/env bash
# fetch_bench.sh [ROUNDS] — `crawler fetch` and aria2c on the same 200 x 4 MiB files from nginx on
# 127.0.0.1, in one run: HTTP/1.1 plain, HTTP/1.1 over TLS (both tools), HTTP/2 over TLS (ours;
# aria2c has no HTTP/2). Every tool verifies nothing itself except ours (--checksums); the harness
# checks every run's files against SHA256SUMS. Prints the median table (MB/s, CPU s, peak RSS).
# Reuses ../shared/bench, copied to bench/.work/fetch-harness with its nginx moved to ports
# 18080 / 18443 (FETCH_BENCH_PORTS="H1 H2" to change) so it never collides with another bench's
# nginx. Everything listens on 127.0.0.1; nginx is stopped at the end; outputs are deleted
# after each run is counted (KEEP=1 keeps them).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${1:-3}
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
W=$HERE/.work
H=$W/fetch-harness
read -r P1 P2 <<<"${FETCH_BENCH_PORTS:-18080 18443}"
mkdir -p "$W"
if [ ! -d "$H" ]; then
  cp -r "$SHARED" "$H"
  rm -rf "$H/.work/out" "$H/.work/results"*.jsonl "$H/.work/nginx"
  sed -i "s/\"8080::/\"$P1::/; s/ \"8443:ssl/ \"$P2:ssl/" "$H/serve.sh"
fi
for tool in nginx aria2c /usr/bin/time openssl; do
  command -v "$tool" >/dev/null || { apt-get update -q && apt-get install -y -q nginx aria2 time openssl; break; }
done
B=$H/.work/bulk
[ -f "$B/SHA256SUMS" ] || python3 "$H/site.py" --bulk "$B" --base "http://127.0.0.1:$P1" >/dev/null
U1=$B/urls.txt U2=$B/urls-https.txt
sed "s|^http://127.0.0.1:$P1|https://127.0.0.1:$P2|" "$U1" >"$U2"
export CRAWLER=${CRAWLER:-$(command -v crawler)} CA=$H/.work/tls/ca.pem SUMS=$B/SHA256SUMS
export EXPECT=200 VERIFY_SHA256=$B/SHA256SUMS CLEAN_AFTER=$([ "${KEEP:-0}" = 1 ] && echo 0 || echo 1)
export CONCURRENCY=${CONCURRENCY:-16}
[ -f "$H/.work/results.jsonl" ] && mv "$H/.work/results.jsonl" "$H/.work/results.$(date +%s).jsonl"
"$H/serve.sh" start
trap '"$H/serve.sh" stop' EXIT
cd "$H"
ARIA='exec aria2c -q -i "$URLS" -j "$CONCURRENCY" --ca-certificate "$CA" -d "$OUT_DIR"'
for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS"
  URLS=$U1 ./crawl.sh bulk-aria2c-h1 -- sh -c "$ARIA"
  URLS=$U1 ./crawl.sh bulk-crawler-h1 -- "$HERE/fetch_job.sh" h1
  URLS=$U2 ./crawl.sh bulk-aria2c-h1-tls -- sh -c "$ARIA"
  URLS=$U2 ./crawl.sh bulk-crawler-h1-tls -- "$HERE/fetch_job.sh" h1
  URLS=$U2 ./crawl.sh bulk-crawler-h2 -- "$HERE/fetch_job.sh" h2
done
python3 ./summarize.py | tee "$W/fetch-summary.md"
