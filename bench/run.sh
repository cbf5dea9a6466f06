#!/usr/bin/env bash
# run.sh [ROUNDS] — our crawler and its peers on the same nginx-served 10,000-page site, in one run.
# Reuses ../shared/bench (copied to bench/.work/harness so the shared folder stays clean):
# setup (apt: nginx wget2 ...; venvs for Scrapy and httpx), nginx on 127.0.0.1:8080 / :8443,
# then ROUNDS interleaved rounds of every crawler, then the median table (ratios against Scrapy's
# HTTP/2 row; REF=name to change). Everything listens on 127.0.0.1; nginx is stopped at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${1:-1}
SHARED=${SHARED_BENCH:-$HERE/../../shared/bench}
W=$HERE/.work
H=$W/harness
mkdir -p "$W"
[ -d "$H" ] || cp -r "$SHARED" "$H"
(cd "$H" && ./setup.sh >"$W/setup.log" 2>&1)
export CRAWLER=${CRAWLER:-$(command -v crawler)} CA=$H/.work/tls/ca.pem SSL_CERT_FILE=$H/.work/tls/ca.pem
read -r P1 P2 <<<"${BENCH_PORTS:-8080 8443}"  # the ports of the harness copy's nginx
H1=http://127.0.0.1:$P1/index.html H2=https://127.0.0.1:$P2/index.html
[ -f "$H/.work/results.jsonl" ] && mv "$H/.work/results.jsonl" "$H/.work/results.$(date +%s).jsonl"
"$H/serve.sh" start
trap '"$H/serve.sh" stop' EXIT
cd "$H"
SCRAPY=".work/venv-scrapy/bin/scrapy runspider peers/scrapy_spider.py"
HTTPX=".work/venv-httpx/bin/python peers/httpx_naive.py"
WGET2='exec wget2 -r -l 0 --max-threads 16 -q -nH --cut-url-get-vars --ca-certificate .work/tls/ca.pem -P "$OUT_DIR" "$START_URL"'
for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS"
  START_URL=$H1 ./crawl.sh crawler-h1 -- "$HERE/crawl_job.sh" h1
  START_URL=$H2 ./crawl.sh crawler-h1-tls -- "$HERE/crawl_job.sh" h1
  START_URL=$H2 ./crawl.sh crawler-h2 -- "$HERE/crawl_job.sh" h2
  START_URL=$H2 PROCESSES=2 ./crawl.sh crawler-h2-p2 -- "$HERE/crawl_job.sh" h2
  START_URL=$H2 ./crawl.sh scrapy-h1-tls -- $SCRAPY
  START_URL=$H2 SCRAPY_H2=1 ./crawl.sh scrapy-h2 -- $SCRAPY
  START_URL=$H2 ./crawl.sh httpx-h1-tls -- $HTTPX
  START_URL=$H2 ./crawl.sh httpx-h2 -- $HTTPX --http2
  START_URL=$H2 ./crawl.sh wget2-h2 -- sh -c "$WGET2"
  START_URL=$H1 ./crawl.sh wget2-h1 -- sh -c "$WGET2"
done
REF=${REF:-scrapy-h2} python3 ./summarize.py | tee "$W/summary.md"
