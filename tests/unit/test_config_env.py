"""CRAWLER_<SECTION>__<FIELD> environment overrides: above the YAML, below command-line flags,
typed like the YAML, and a bad variable fails with one line that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawler.config import EnvOverride, env_overrides, load_job
from crawler.errors import ConfigError

JOB = """\
seeds: [http://a.org/]
limits: {concurrency: 8, per_host: {rate: 2}}
scope: {max_depth: 3}
output: {dir: out/yaml}
logging: {level: debug, format: console}
"""


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job" / "job.yaml"
    path.parent.mkdir()
    path.write_text(JOB)
    return path


def test_environment_beats_yaml_and_yaml_beats_defaults(job_file: Path) -> None:
    """Each variable replaces the YAML's value; settings named by no variable keep the YAML's
    value, and settings in neither keep the default."""
    plain = load_job(job_file, environ={})
    assert plain.limits.concurrency == 8
    assert plain.logging.format == "console"
    env = load_job(
        job_file,
        environ={
            "CRAWLER_LIMITS__CONCURRENCY": "3",
            "CRAWLER_LOGGING__FORMAT": "json",
            "CRAWLER_LIMITS__PER_HOST__CONCURRENCY": "2",
        },
    )
    assert env.limits.concurrency == 3
    assert env.logging.format == "json"
    assert env.limits.per_host.concurrency == 2
    assert env.limits.per_host.rate == 2  # YAML, beside an overridden sibling
    assert env.logging.level == "debug"  # YAML
    assert env.limits.stop_grace_s == 10  # default


def test_values_are_typed_like_yaml(job_file: Path, tmp_path: Path) -> None:
    """Numbers, booleans, literals, lists and mappings (YAML flow), null for optional fields,
    and paths arrive typed; a relative path is relative to the current folder, not the job's."""
    job = load_job(
        job_file,
        environ={
            "CRAWLER_NAME": "from-env",
            "CRAWLER_LIMITS__PER_HOST__RATE": "0.5",
            "CRAWLER_ROBOTS__OBEY": "false",
            "CRAWLER_SCOPE__QUERY": "keep",
            "CRAWLER_SCOPE__DOMAINS": "[A.org, b.org]",
            "CRAWLER_SCOPE__MAX_DEPTH": "null",
            "CRAWLER_HTTP__HEADERS": '{"X-Team": "docs"}',
            "CRAWLER_OUTPUT__DIR": "out/env",
            "CRAWLER_SEEDS": "[http://b.org/, http://c.org/]",
        },
    )
    assert job.name == "from-env"
    assert job.limits.per_host.rate == 0.5
    assert job.robots.obey is False
    assert job.scope.query == "keep"
    assert job.scope.domains == ("a.org", "b.org")
    assert job.scope.max_depth is None
    assert dict(job.http.headers) == {"X-Team": "docs"}
    assert job.output.dir == Path.cwd() / "out" / "env"
    assert job.seeds == ("http://b.org/", "http://c.org/")
    # The YAML's own relative path still resolves against the job's folder.
    assert load_job(job_file, environ={}).output.dir == job_file.parent / "out" / "yaml"


def test_an_absent_section_is_created(tmp_path: Path) -> None:
    """A variable can set a field of a section the YAML does not have, or has as null."""
    path = tmp_path / "job.yaml"
    path.write_text("seeds: [http://a.org/]\nhttp: {auth: null}\n")
    job = load_job(
        path,
        environ={
            "CRAWLER_EXTRACT__ASSETS": "true",
            "CRAWLER_HTTP__AUTH__TYPE": "bearer",
            "CRAWLER_HTTP__AUTH__TOKEN_ENV": "SITE_TOKEN",
            "SITE_TOKEN": "secret",
        },
    )
    assert job.extract.assets is True
    assert job.http.auth is not None
    assert job.http.auth.token_env == "SITE_TOKEN"


def test_empty_and_foreign_variables_are_not_settings(job_file: Path) -> None:
    """An empty value counts as unset (compose's ``${VAR:-}``); CRAWLER_ names without ``__``
    that are no top-level field (a token, a test hook) are not settings; others are ignored."""
    environ = {
        "CRAWLER_LIMITS__CONCURRENCY": "",
        "CRAWLER_TOKEN": "secret",
        "CRAWLER_FAULT": "storage:3",
        "PATH": "/usr/bin",
        "crawler_limits__concurrency": "1",
    }
    assert env_overrides(environ) == []
    assert load_job(job_file, environ=environ).limits.concurrency == 8
    assert env_overrides({"CRAWLER_LIMITS__CONCURRENCY": "4", "CRAWLER_NAME": "n"}) == [
        EnvOverride("CRAWLER_LIMITS__CONCURRENCY", ("limits", "concurrency"), "4"),
        EnvOverride("CRAWLER_NAME", ("name",), "n"),
    ]


def test_process_environment_is_the_default(
    job_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``environ``, load_job reads the process environment."""
    monkeypatch.setenv("CRAWLER_LIMITS__CONCURRENCY", "5")
    assert load_job(job_file).limits.concurrency == 5
    assert load_job(job_file, environ={}).limits.concurrency == 8


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"CRAWLER_LIMITS__CONCURRENCY": "many"},
            r"^environment variable CRAWLER_LIMITS__CONCURRENCY: limits.concurrency: "
            r"Input should be a valid integer.*'many'",
        ),
        (
            {"CRAWLER_LIMITS__PER_HOST__RATE": "-1"},
            r"^environment variable CRAWLER_LIMITS__PER_HOST__RATE: limits.per_host.rate: "
            r"Input should be greater than 0",
        ),
        (
            {"CRAWLER_LOGGING__LEVEL": "loud"},
            r"^environment variable CRAWLER_LOGGING__LEVEL: logging.level: Input should be 'debug'",
        ),
        (
            {"CRAWLER_LIMITS__CONCURENCY": "4"},
            r"^environment variable CRAWLER_LIMITS__CONCURENCY: no such setting: "
            r"limits.concurency$",
        ),
        (
            {"CRAWLER_LIMIT__CONCURRENCY": "4"},
            r"^environment variable CRAWLER_LIMIT__CONCURRENCY: no such setting: limit$",
        ),
        (
            {"CRAWLER_NAME__FIRST": "x"},
            r"^environment variable CRAWLER_NAME__FIRST: no such setting: name.first$",
        ),
        (
            {"CRAWLER_LIMITS": "{concurrency: 4}"},
            r"^environment variable CRAWLER_LIMITS: limits is a section; "
            r"set one of its fields with CRAWLER_LIMITS__<FIELD>$",
        ),
        (
            {"CRAWLER_SCOPE__DOMAINS": "[a.org"},
            r"^environment variable CRAWLER_SCOPE__DOMAINS: invalid YAML",
        ),
        (
            {"CRAWLER_HTTP__AUTH__TYPE": "bearer"},
            r"^environment variable CRAWLER_HTTP__AUTH__TYPE: http.auth: "
            r"bearer auth needs token_env",
        ),
    ],
)
def test_bad_variable_fails_with_one_line_naming_it(
    job_file: Path, environ: dict[str, str], message: str
) -> None:
    """Bad values, unknown names and sections given whole: one line naming the variable."""
    with pytest.raises(ConfigError, match=message) as info:
        load_job(job_file, environ=environ)
    assert "\n" not in str(info.value)


def test_yaml_errors_still_name_the_file(job_file: Path) -> None:
    """A bad YAML value next to a good variable is blamed on the file and line, not the env."""
    job_file.write_text(JOB.replace("concurrency: 8", "concurrency: lots"))
    with pytest.raises(ConfigError, match=r"job.yaml:2: limits.concurrency"):
        load_job(job_file, environ={"CRAWLER_LOGGING__LEVEL": "info"})
