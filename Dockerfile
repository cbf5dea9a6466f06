# The crawler as a container image. Build: docker build -t crawler:0.1.0 .
# Run: see README.md, "Run in a container" (and docker-compose.yml).
#
# Stage 1 builds wheels for the crawler and its dependencies (binary wheels from the package
# index; nothing is compiled). Stage 2 installs only those wheels into a slim Python image: no
# compiler, no pip cache, no source tree. The image runs as a fixed non-root user and works with
# a read-only root filesystem: only /data (the output volume) and /tmp need to be writable.
# The bind mount in stage 2 needs BuildKit (the default builder since Docker 23).

FROM python:3.12-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crawler ./crawler
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM python:3.12-slim-bookworm

LABEL org.opencontainers.image.title="crawler" \
      org.opencontainers.image.description="An async, concurrent web crawler and bulk fetcher" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

# The wheels are mounted for this one step, so they never become a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels crawler==0.1.0 \
    && groupadd --system --gid 10001 crawler \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin crawler \
    && mkdir /data \
    && chown 10001:10001 /data

# Logs are JSON lines on stderr (the summary table goes to stdout); output goes to the volume.
# Any job setting can be overridden the same way: CRAWLER_<SECTION>__<FIELD>.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRAWLER_LOGGING__FORMAT=json \
    CRAWLER_OUTPUT__DIR=/data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# SIGTERM (docker stop) stops new requests, lets in-flight ones finish within the job's
# limits.stop_grace_s (default 10 s), commits the state and exits 143; re-running resumes.
# Give docker stop more time than that grace: docker stop -t 30, or compose's stop_grace_period.
STOPSIGNAL SIGTERM

# No health check: a crawl is a batch job that exits when it is done, and its exit code is the
# verdict (0 done, 2 bad job, 143 stopped). A running crawler that is stuck on slow hosts is
# still healthy; nothing a periodic probe could measure would tell a supervisor more.
HEALTHCHECK NONE

# Exec form: the crawler is the process that receives docker stop's SIGTERM (run with --init,
# or compose's init: true, so that a signal before the crawl starts is not lost on PID 1).
ENTRYPOINT ["crawler"]
CMD ["crawl", "/config/job.yaml"]
