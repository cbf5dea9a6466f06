"""Job files: valid ones load, bad ones fail with one line naming where and what."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crawler.config import load_job
from crawler.errors import ConfigError

CONFIG_DIR = Path(__file__).parents[2] / "config"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    """Each example job in config/ loads (given the secrets its http.auth reads, and no
    CRAWLER_ overrides)."""
    auth = (yaml.safe_load(path.read_text()).get("http") or {}).get("auth") or {}
    secrets = {auth[k]: "test" for k in ("token_env", "username_env", "password_env") if k in auth}
    job = load_job(path, environ=secrets)
    assert job.seeds


def test_example_values_and_relative_paths() -> None:
    """Values from the YAML arrive typed; output.dir is relative to the job file's folder."""
    job = load_job(CONFIG_DIR / "example.yaml")
    assert job.limits.per_host.rate == 4
    assert job.limits.max_bytes == 50_000_000
    assert job.scope.query == "strip"
    assert job.output.dir == CONFIG_DIR / "out" / "docs"
    with pytest.raises(Exception, match="frozen"):
        job.name = "other"  # type: ignore[misc]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "seeds: [http://a.org/]\nscope:\n  max_dept: 3\n",
            r"job.yaml:3: scope.max_dept: unknown key",
        ),
        (
            "seeds: [http://a.org/]\nlimits:\n  concurrency: many\n",
            r"job.yaml:3: limits.concurrency: Input should be a valid integer.*'many'",
        ),
        ("seeds: [ftp://a.org/]\n", r"job.yaml:1: seeds: seed 0 'ftp://a.org/': not an http"),
        ("seeds: [http://a.org/]\nscope: {exclude: ['(']}\n", r"scope.exclude: bad regex '\('"),
        ("seeds: [http://a.org/\n", r"job.yaml:\d+: invalid YAML"),
        ("name: x\n", r"the job needs seeds or seeds_file"),
        ("- a\n- b\n", r"must be a YAML mapping"),
        (
            "seeds: [http://a.org/]\nhttp: {auth: {type: bearer, token_env: NO_SUCH_VAR_X}}\n",
            r"http.auth: environment variable NO_SUCH_VAR_X is not set",
        ),
    ],
)
def test_bad_jobs_fail_with_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, wrong types, bad seeds, bad regexes and broken YAML name place and problem."""
    with pytest.raises(ConfigError, match=message) as info:
        load_job(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_seeds_file_lines_are_checked(tmp_path: Path) -> None:
    """A seeds file is read relative to the job; a bad line names FILE:LINE."""
    (tmp_path / "urls.txt").write_text("# seeds\nhttp://a.org/x\n\nhttp://a.org/y\n")
    job = load_job(write(tmp_path, "seeds_file: urls.txt\n"))
    assert job.seeds == ()  # streamed, never held: see iter_seeds
    assert list(job.iter_seeds()) == ["http://a.org/x", "http://a.org/y"]
    assert (job.seed_count(), job.seed_hosts()) == (2, ("a.org",))
    (tmp_path / "urls.txt").write_text("http://a.org/x\nnot a url\n")
    with pytest.raises(ConfigError, match=r"urls.txt:2: 'not a url'"):
        load_job(write(tmp_path, "seeds_file: urls.txt\n"))


def test_follow_false_keeps_the_seeds_file_for_the_download_list(tmp_path: Path) -> None:
    """With follow: false the seeds file is not parsed as plain URLs (its lines may carry
    sha256= and names, read by the download list parser); the download section has file
    defaults (no cap, no total deadline)."""
    (tmp_path / "list.txt").write_text(f"http://a.example/x sha256={'0' * 64} x.bin\n")
    job = load_job(write(tmp_path, "seeds_file: list.txt\nfollow: false\n"))
    assert job.seeds == ()
    assert job.seeds_file == tmp_path / "list.txt"
    assert job.download.max_bytes is None
    assert job.download.max_time_s is None
    with pytest.raises(ConfigError, match="seeds_file: no such file"):
        load_job(write(tmp_path, "seeds_file: nope.txt\nfollow: false\n"))


def test_settings_only_job_for_fetch(tmp_path: Path) -> None:
    """crawler fetch --job: a job without seeds is fine when the list comes from elsewhere,
    and still an error for a crawl."""
    path = write(tmp_path, "limits: {concurrency: 3}\ndownload: {attempts: 5}\n")
    job = load_job(path, seeds_optional=True)
    assert (job.limits.concurrency, job.download.attempts) == (3, 5)
    with pytest.raises(ConfigError, match="needs seeds"):
        load_job(path)
