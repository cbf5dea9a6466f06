"""Shared fixtures: a test CA, live servers, a job factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from crawler.benchsite import TlsFiles, make_tls
from crawler.config import JobConfig, job_from_mapping


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Keep structlog's default console output out of test output, per test."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    yield
    structlog.reset_defaults()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def make_job(tmp_path: Path, tls_files: TlsFiles) -> Callable[..., JobConfig]:
    """A job for a local server: fast limits, the test CA trusted, output in tmp_path."""

    def factory(seeds: list[str], **overrides: Any) -> JobConfig:
        base: dict[str, Any] = {
            "name": "test",
            "seeds": seeds,
            "limits": {
                "concurrency": 16,
                "per_host": {"concurrency": 16, "rate": 100_000},
                "request_timeout_s": 10,
            },
            "http": {"ca_bundle": str(tls_files.ca), "timeouts": {"connect_s": 5, "read_s": 5}},
            "robots": {"obey": False},
            "output": {"dir": str(tmp_path / "out")},
        }
        return job_from_mapping(_merge(base, overrides), source="test")

    return factory
