"""The container: Dockerfile and docker-compose.yml are checked as data, and the image's
entrypoint runs exactly as the container would run it, outside Docker (there is no Docker engine
here): same command, same environment, config read-only, output in a fresh folder, JSON logs,
SIGTERM mid-crawl, and a re-run that completes the crawl."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from crawler.benchsite import SiteApp, TlsFiles
from crawler.cli import app
from crawler.config import env_overrides, load_job
from tests.servers import LiveServer

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent  # the venv's scripts: crawler, hadolint, docker-compose
IMAGE_UID = 10001  # the Dockerfile's USER


# --- reading the files -------------------------------------------------------------------------


@dataclass
class Stage:
    """The instructions of one Dockerfile stage, continuation lines joined."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == name]

    def one(self, name: str) -> str:
        found = self.all(name)
        assert len(found) == 1, f"{name}: {found}"
        return found[0]

    def env(self) -> dict[str, str]:
        return dict(pair.split("=", 1) for args in self.all("ENV") for pair in shlex.split(args))


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    logical = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append(Stage(args.strip()))
        else:
            stages[-1].instructions.append((instr.upper(), args.strip()))
    return stages


def compose_yaml() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_config(shell_env: dict[str, str]) -> dict[str, Any]:
    """The compose model as Docker Compose itself resolves and validates it (schema, references,
    ``${VAR:-default}`` interpolation from ``shell_env``); no Docker engine involved."""
    compose = [str(BIN / "docker-compose"), "-f", str(COMPOSE), "--profile", "fetch"]
    result = subprocess.run(
        [*compose, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **shell_env},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def mounts_of(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Container path -> (source, mode) from the short volume syntax ``SOURCE:TARGET[:MODE]``."""
    out = {}
    for spec in service["volumes"]:
        source, target, *mode = spec.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def to_host(value: str, mounts: dict[str, Path]) -> str:
    """A container path rewritten to the host folder mounted there; other values unchanged."""
    for target, source in mounts.items():
        if value == target or value.startswith(target + "/"):
            return str(source) + value[len(target) :]
    return value


def seconds(duration: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    return sum(float(n) * units[u] for n, u in parts)


def auth_env_names(job_file: Path) -> set[str]:
    """The environment variables a job file reads its credentials from."""
    auth = (yaml.safe_load(job_file.read_text()).get("http") or {}).get("auth") or {}
    return {auth[k] for k in ("token_env", "username_env", "password_env") if auth.get(k)}


def commands() -> dict[str, Any]:
    """The CLI's subcommands, as the parser sees them (typer's click-style command objects)."""
    found: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return found


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing at all (no error, warning, info or style finding)."""
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "", result.stdout


def test_dockerfile_contract() -> None:
    """Multi-stage: wheels built in a builder, a slim final stage that installs exactly this
    version, a fixed non-root user, exec-form ``crawler`` entrypoint with the compose job as its
    default command, SIGTERM as stop signal, a health check decision, labels, JSON logs, output
    on /data; every CRAWLER_ variable it sets names a setting; the build context keeps the files
    the build copies."""
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.base.endswith(" AS builder")
    assert any("pip wheel" in args for args in builder.all("RUN"))
    assert re.fullmatch(r"python:3\.1[2-9]-slim\S*", final.base), final.base

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = project["version"]
    install = " ".join(final.all("RUN"))
    assert "--no-index" in install
    assert "--no-cache-dir" in install
    assert f"crawler=={version}" in install
    assert f'org.opencontainers.image.version="{version}"' in final.one("LABEL")
    assert "org.opencontainers.image.title" in final.one("LABEL")

    assert final.one("USER") == f"{IMAGE_UID}:{IMAGE_UID}"
    assert f"--uid {IMAGE_UID}" in install
    assert final.one("STOPSIGNAL") == "SIGTERM"
    assert final.all("HEALTHCHECK"), "decide on a HEALTHCHECK (NONE with a reason is a decision)"
    assert json.loads(final.one("ENTRYPOINT")) == ["crawler"]
    assert json.loads(final.one("CMD")) == ["crawl", "/config/job.yaml"]
    assert project["scripts"]["crawler"] == "crawler.cli:main"  # what the entrypoint runs

    env = final.env()
    assert env["CRAWLER_LOGGING__FORMAT"] == "json"
    assert env["CRAWLER_OUTPUT__DIR"] == "/data"
    assert final.one("WORKDIR") == "/data"
    crawler_vars = {k: v for k, v in env.items() if k.startswith("CRAWLER_")}
    assert [o.variable for o in env_overrides(crawler_vars)] == sorted(crawler_vars)

    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: everything not named next stays out
    for copy in builder.all("COPY"):
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_file_validates_with_docker_compose() -> None:
    """Docker Compose's own validator (schema, volume references, interpolation) accepts the
    file; both services resolve, the fetch one only under its profile."""
    model = compose_config({"SITE_TOKEN": "x"})
    assert set(model["services"]) == {"crawler", "fetch"}
    assert model["services"]["fetch"]["profiles"] == ["fetch"]
    assert "profiles" not in model["services"]["crawler"]
    assert set(model["volumes"]) == {"crawler-data"}


@pytest.mark.parametrize(
    "name",
    [
        "crawler",
        "fetch",
    ],
)
def test_compose_service_refers_to_things_that_exist(name: str, tmp_path: Path) -> None:
    """A service's command is a crawler subcommand with options it accepts; the files it names
    are in the mounted ./config; config is mounted read-only, output is the named volume at
    /data; the root filesystem is read-only with /tmp writable; stop_grace_period is longer
    than the job's grace; every environment variable names a setting or a secret the job reads."""
    compose = compose_yaml()
    service = compose["services"][name]
    assert (ROOT / service["build"] / "Dockerfile").is_file()
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["init"] is True
    mounts = mounts_of(service)
    assert mounts["/config"] == ("./config", "ro")
    assert (ROOT / "config").is_dir()
    assert mounts["/data"][0] in compose["volumes"]

    host = {"/config": ROOT / "config", "/data": tmp_path / "data"}
    command = [to_host(arg, host) for arg in service["command"]]
    for arg, mapped in zip(service["command"], command, strict=True):
        if arg.startswith("/config/"):
            assert Path(mapped).is_file(), f"{arg}: no {mapped}"
    sub = commands().get(command[0])
    assert sub is not None, f"crawler has no command {command[0]!r}"
    sub.make_context(command[0], command[1:])  # raises on an option the command lacks

    environment: dict[str, Any] = service.get("environment") or {}
    jobs = [Path(a) for a in command[1:] if a.endswith((".yaml", ".yml"))]
    secrets = set().union(*(auth_env_names(job) for job in jobs))
    for variable in environment:
        if variable.startswith("CRAWLER_"):
            assert env_overrides({variable: "1"}), f"{variable} names no setting"
        else:
            assert variable in secrets, f"{variable}: not a setting and no job reads it"
    # The jobs load with the environment compose gives the service (here: the token set).
    resolved = compose_config(dict.fromkeys(secrets, "x"))["services"][name]["environment"]
    grace = 10.0  # the default limits.stop_grace_s
    for job in jobs:
        env = {k: v for k, v in resolved.items() if v is not None}
        grace = max(grace, load_job(job, environ=env).limits.stop_grace_s)
    assert seconds(service["stop_grace_period"]) > grace
    assert service["stop_signal"] == "SIGTERM"


# --- the entrypoint, run as the container runs it -----------------------------------------------


@dataclass
class RecordingApp:
    """The generated site, also counting the Authorization headers it received."""

    site: SiteApp
    auth: Counter[str] = field(default_factory=Counter)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.auth[headers.get(b"authorization", b"").decode()] += 1
        await self.site(scope, receive, send)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


# Run a command in a private mount namespace where every filesystem is read-only but the given
# folders (what compose's ``read_only: true`` with a volume and a tmpfs does): ``ARGS... -- CMD``.
# The kernel's /proc, /sys and /dev stay as they are. The last step execs the command, so its
# PID is the one to signal.
_READ_ONLY_ROOT = """
set -e
keep=":"
while [ "$1" != "--" ]; do
    mount --bind "$1" "$1"
    keep="$keep$1:"
    shift
done
shift
mount -o remount,bind,ro /
for m in $(awk '{print $5}' /proc/self/mountinfo); do
    case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    case "$keep" in *":$m:"*) continue ;; esac
    mount -o remount,bind,ro "$m" 2>/dev/null || true
done
exec "$@"
"""


def read_only_root(*writable: Path) -> list[str]:
    """The command prefix that runs what follows with only ``writable`` folders writable."""
    return [*UNSHARE, "sh", "-c", _READ_ONLY_ROOT, "sh", *map(str, writable), "--"]


UNSHARE = ["unshare", "--mount", "--propagation", "private"]


@functools.cache
def can_make_root_read_only() -> bool:
    """Whether this user may make private mount namespaces (root on the project's machines)."""
    try:
        probe = subprocess.run(
            [*UNSHARE, "true"],
            capture_output=True,
            timeout=30,
        )
    except FileNotFoundError:
        return False
    return probe.returncode == 0


@pytest.mark.slow
def test_entrypoint_outside_docker_sigterm_and_resume(tls_files: TlsFiles, tmp_path: Path) -> None:
    """The image's ENTRYPOINT + the compose service's command, with the Dockerfile's ENV and the
    environment Docker Compose resolves for the service (CRAWLER_ overrides and the token passed
    through), the root filesystem read-only (a mount namespace, where the user may make one),
    config read-only, output in a fresh folder, stdin/stdout not a terminal: JSON logs; SIGTERM
    mid-crawl exits 143 within the grace; the re-run completes the crawl, no page fetched twice,
    every request authorized with the token, the config untouched."""
    final = dockerfile_stages()[-1]
    entrypoint = json.loads(final.one("ENTRYPOINT"))
    token = "s3cret-token"
    shell = {
        "SITE_TOKEN": token,
        "CRAWLER_LIMITS__CONCURRENCY": "8",
        "CRAWLER_LIMITS__PER_HOST__RATE": "40",  # job.yaml's 2/s would take minutes
    }
    service = compose_config(shell)["services"]["crawler"]
    targets = {v["target"]: v for v in service["volumes"]}
    assert targets["/config"]["read_only"] is True

    pages = 200  # all within job.yaml's max_depth 3 of /index.html (10 links a page)
    site = RecordingApp(SiteApp(pages))
    config, data = tmp_path / "config", tmp_path / "data"
    with LiveServer(site, tls_files) as server:
        # The mounted config: a copy of ./config with the job's seeds pointed at the local site.
        shutil.copytree(ROOT / "config", config)
        job = yaml.safe_load((config / "job.yaml").read_text())
        job["seeds"] = [server.url("/index.html")]
        (config / "job.yaml").write_text(yaml.safe_dump(job))
        shutil.copy(tls_files.ca, config / "ca.pem")
        for path in [config, *config.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        data.mkdir()  # the fresh named volume
        scratch = tmp_path / "tmp"  # the container's tmpfs /tmp
        scratch.mkdir()
        host = {"/config": config, "/data": data}

        env = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent"}
        env.update({k: to_host(v, host) for k, v in final.env().items()})
        # Compose passes empty values through (the crawler reads them as unset) and drops
        # variables without a value (SITE_TOKEN when the shell has none).
        env.update(
            {k: to_host(v, host) for k, v in service["environment"].items() if v is not None}
        )
        env["CRAWLER_HTTP__CA_BUNDLE"] = to_host("/config/ca.pem", host)  # -e, for the test CA
        env["TMPDIR"] = str(scratch)
        exe = shutil.which(entrypoint[0], path=env["PATH"])
        assert exe is not None
        argv = [exe, *entrypoint[1:], *(to_host(a, host) for a in service["command"])]
        grace = load_job(Path(argv[-1]), environ=env).limits.stop_grace_s
        if can_make_root_read_only():
            argv = [*read_only_root(data, scratch), *argv]
        before = snapshot(config)

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen(
                argv,
                env=env,
                cwd=data,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        proc = start()
        try:
            deadline = time.monotonic() + 30
            while sum(site.site.requests.values()) < 40 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            stdout, stderr = proc.communicate(timeout=grace + 20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, stderr
        assert time.monotonic() - stopped < grace + 5
        events = [json.loads(line) for line in stderr.splitlines()]
        stopping = [e for e in events if e["event"] == "crawl.stopping"]
        assert stopping, stderr
        assert stopping[0]["signal"] == "SIGTERM"
        assert "stopped by" in stdout
        first = sum(site.site.requests.values())
        assert 40 <= first < pages
        # CRAWLER_OUTPUT__DIR from the compose service wins over the image's /data.
        assert sorted(p.name for p in data.iterdir()) == ["crawl"]

        rerun = start()
        try:
            stdout, stderr = rerun.communicate(timeout=120)
        finally:
            if rerun.poll() is None:
                rerun.kill()
                rerun.wait()
        assert rerun.returncode == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    assert any(e["event"] == "crawl.resumed" for e in events)
    served = Counter(site.site.requests)
    # robots.txt is each run's first request to the host (the job obeys it); never with
    # credentials; every page exactly once across the two runs.
    assert served.pop("/robots.txt") == 2
    assert sum(served.values()) == pages
    assert max(served.values()) == 1
    assert site.auth == Counter({f"Bearer {token}": pages, "": 2})
    manifest = (data / "crawl" / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in manifest]
    assert len(records) == pages
    assert {r["outcome"] for r in records} == {"ok"}
    assert snapshot(config) == before


def test_read_only_root_wrapper_really_is_read_only(tmp_path: Path) -> None:
    """The mount-namespace wrapper the entrypoint test uses lets the process write to the given
    folder only: not to the source tree, not beside the given folder (or the user may not make
    namespaces, and the entrypoint test runs without the wrapper)."""
    if not can_make_root_read_only():
        assert os.geteuid() != 0 or shutil.which("unshare") is None
        return
    writable = tmp_path / "w"
    writable.mkdir()
    outside = ROOT / f".ro-probe-{os.getpid()}"
    targets = [outside, tmp_path / "beside", writable / "ok"]
    script = "; ".join(f"touch {shlex.quote(str(t))} || true" for t in targets)
    try:
        result = subprocess.run(
            [*read_only_root(writable), "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "beside").exists()
    assert (writable / "ok").exists()
    assert result.stderr.count("Read-only file system") == 2, result.stderr


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    """An output folder the crawler cannot write (a volume owned by another user, a read-only
    filesystem, a file in the way): exit 1 with one line naming the folder, no traceback."""
    job = tmp_path / "job.yaml"
    job.write_text('seeds: ["http://127.0.0.1:9/"]\nrobots: {obey: false}\n')
    (tmp_path / "volume").write_text("a file, not a folder")
    env = {"PATH": os.environ["PATH"], "CRAWLER_OUTPUT__DIR": str(tmp_path / "volume" / "out")}
    cases = [([str(BIN / "crawler"), "crawl", str(job)], "Not a directory")]
    if can_make_root_read_only():
        # The output outside /tmp, with the root filesystem read-only.
        ro_env = {**env, "CRAWLER_OUTPUT__DIR": str(ROOT / "out" / "never")}
        ro = read_only_root(tmp_path / "volume-ok")
        (tmp_path / "volume-ok").mkdir()
        cases.append(
            (
                [*ro, "env", *(f"{k}={v}" for k, v in ro_env.items()), *cases[0][0]],
                "Read-only file system",
            )
        )
    for argv, reason in cases:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "cannot write to the output folder" in lines[0]
        assert reason in lines[0]
    assert not (ROOT / "out" / "never").exists()
