"""CRAWLER_ environment overrides through the real command line: a flag beats the environment,
the environment beats the YAML, the YAML beats the default; a bad variable is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CRAWLER = [sys.executable, "-m", "crawler"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the test's environment minus any CRAWLER_ variable, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    return subprocess.run(
        [*CRAWLER, *args], capture_output=True, text=True, timeout=60, env={**base, **env}
    )


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A job whose one seed nobody listens on: a quick crawl with one recorded failure."""
    path = tmp_path / "job.yaml"
    path.write_text(
        'seeds: ["http://127.0.0.1:9/"]\n'
        "robots: {obey: false}\n"
        "output: {dir: yaml-out}\n"
        "logging: {level: error, format: console}\n"
    )
    return path


def fetch_events(stderr: str) -> list[dict[str, object]]:
    """The fetch.done events of a JSON log; fails on any line that is not JSON."""
    events = [json.loads(line) for line in stderr.splitlines()]
    return [e for e in events if e["event"] == "fetch.done"]


def test_flag_beats_environment_beats_yaml_beats_default(job: Path, tmp_path: Path) -> None:
    """Output folder and log level/format from each layer in turn, observed in what the crawl
    writes and logs."""
    yaml_only = run("crawl", str(job))
    assert yaml_only.returncode == 0, yaml_only.stderr
    assert (tmp_path / "yaml-out" / "manifest.jsonl").is_file()  # YAML beats ./out, the default
    assert "fetch.done" not in yaml_only.stderr  # YAML's level error beats the default info

    env = {
        "CRAWLER_OUTPUT__DIR": str(tmp_path / "env-out"),
        "CRAWLER_LOGGING__LEVEL": "info",
        "CRAWLER_LOGGING__FORMAT": "json",
    }
    from_env = run("crawl", str(job), **env)
    assert from_env.returncode == 0, from_env.stderr
    assert (tmp_path / "env-out" / "manifest.jsonl").is_file()
    assert len(fetch_events(from_env.stderr)) == 1  # JSON at info: the environment won

    flags = run(
        "crawl", str(job), "--output", str(tmp_path / "flag-out"), "--log-level", "error", **env
    )
    assert flags.returncode == 0, flags.stderr
    assert (tmp_path / "flag-out" / "manifest.jsonl").is_file()
    assert fetch_events(flags.stderr) == []  # --log-level beat the environment's info
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "env-out",
        "flag-out",
        "job.yaml",
        "yaml-out",
    ]


@pytest.mark.parametrize("command", ["crawl", "validate"])
@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("CRAWLER_LIMITS__CONCURRENCY", "many", "Input should be a valid integer"),
        ("CRAWLER_LIMITS__CONCURRENCY", "0", "Input should be greater than 0"),
        ("CRAWLER_LOGGING__FORMAT", "xml", "Input should be 'auto', 'console' or 'json'"),
        ("CRAWLER_OUTPUT__DIRECTORY", "/tmp/x", "no such setting: output.directory"),
    ],
)
def test_bad_variable_exits_2_with_one_line(
    job: Path, tmp_path: Path, command: str, variable: str, value: str, problem: str
) -> None:
    """A bad value or an unknown setting name: exit 2, one line naming the variable, nothing
    written."""
    result = run(command, str(job), **{variable: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"environment variable {variable}: " in lines[0]
    assert problem in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]


def test_validate_names_the_variables_it_applied(job: Path) -> None:
    """validate shows the effective output folder and which CRAWLER_ variables it applied."""
    result = run(
        "validate", str(job), CRAWLER_OUTPUT__DIR="/srv/out", CRAWLER_LIMITS__CONCURRENCY="3"
    )
    assert result.returncode == 0, result.stderr
    assert "output /srv/out" in result.stdout
    assert "(environment: CRAWLER_LIMITS__CONCURRENCY, CRAWLER_OUTPUT__DIR)" in result.stdout
