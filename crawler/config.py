"""Job configuration: YAML in, one frozen, validated :class:`JobConfig` out.

Owns: reading the job file, validating it once (pydantic, ``extra="forbid"``), resolving relative
paths against the job file's folder, and turning every problem into one :class:`ConfigError`
line that names the file, the YAML path and line, and what is wrong. After loading, nothing
looks a setting up by string key. Must not: do any network or crawl work. yaml and pydantic are
imported here and nowhere else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from crawler.errors import ConfigError

__all__ = [
    "AuthConfig",
    "DownloadConfig",
    "ExtractConfig",
    "HttpConfig",
    "JobConfig",
    "LimitsConfig",
    "LoggingConfig",
    "OutputConfig",
    "PerHostConfig",
    "RobotsConfig",
    "ScopeConfig",
    "TimeoutsConfig",
    "job_from_mapping",
    "load_job",
    "read_seeds_file",
]

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ScopeConfig(_Model):
    """Which URLs the crawl may fetch."""

    domains: tuple[str, ...] = ()
    """Hosts the crawl stays on. Empty: the seeds' hosts."""
    subdomains: bool = False
    """Also allow subdomains of ``domains`` (``example.org`` allows ``docs.example.org``)."""
    include: tuple[str, ...] = ()
    """Regexes (Python syntax, searched in the canonical URL): when given, a URL must match one."""
    exclude: tuple[str, ...] = ()
    """Regexes: a URL that matches any of them is not fetched."""
    max_depth: Annotated[int, Field(ge=0)] | None = None
    """Link hops from a seed (seeds are depth 0). None: unlimited."""
    max_pages: PositiveInt | None = None
    """At most this many URLs are admitted to the frontier (and so fetched). None: unlimited."""
    query: Literal["keep", "drop", "strip"] = "strip"
    """Query strings: keep them, drop them entirely, or strip the parameters in ``strip_params``."""
    strip_params: tuple[str, ...] = ("utm_*", "fbclid", "gclid", "mc_cid", "mc_eid")
    """Glob patterns of query parameter names removed when ``query: strip``."""

    @field_validator("include", "exclude")
    @classmethod
    def _regexes_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return value

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower().rstrip(".") for d in value)


class PerHostConfig(_Model):
    """Politeness towards each host."""

    concurrency: PositiveInt = 4
    """Requests in flight to one host at once."""
    rate: PositiveFloat = 4.0
    """Requests per second started to one host."""


class LimitsConfig(_Model):
    """Resource limits of the crawl."""

    concurrency: PositiveInt = 32
    """Requests in flight, all hosts together (also the number of workers)."""
    per_host: PerHostConfig = PerHostConfig()
    """Per-host concurrency and rate."""
    max_bytes: PositiveInt = 50_000_000
    """Cap on a decoded body; a larger one is cut off and recorded as ``too_large``."""
    request_timeout_s: PositiveFloat = 60.0
    """Total deadline for one request, headers and body (catches slow-drip servers)."""
    stop_grace_s: Annotated[float, Field(ge=0)] = 10.0
    """After SIGINT / SIGTERM, how long in-flight requests may finish before they are cut."""


class TimeoutsConfig(_Model):
    """httpx's granular timeouts, each per operation."""

    connect_s: PositiveFloat = 10.0
    read_s: PositiveFloat = 30.0
    write_s: PositiveFloat = 10.0
    pool_s: PositiveFloat = 30.0


class AuthConfig(_Model):
    """Credentials, read from the environment (never written in the job file)."""

    type: Literal["bearer", "basic"]
    """``bearer``: ``Bearer $token_env``; ``basic``: ``$username_env`` and ``$password_env``."""
    token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _needs_fields(self) -> AuthConfig:
        if self.type == "bearer" and not self.token_env:
            raise ValueError("bearer auth needs token_env")
        if self.type == "basic" and not (self.username_env and self.password_env):
            raise ValueError("basic auth needs username_env and password_env")
        return self


class HttpConfig(_Model):
    """How requests are made."""

    http2: bool = True
    """Offer HTTP/2 (ALPN falls back to HTTP/1.1 where the server does not speak it)."""
    user_agent: str = "crawler/0.1 (+https://github.com/crawler/crawler)"
    """The User-Agent header; also the token robots.txt rules are matched against."""
    headers: Mapping[str, str] = Field(default_factory=dict)
    """Extra request headers."""
    auth: AuthConfig | None = None
    """Credentials sent to the scope's hosts only."""
    timeouts: TimeoutsConfig = TimeoutsConfig()
    """Per-operation timeouts."""
    ca_bundle: Path | None = None
    """PEM file of extra CA certificates to trust (added to the system's)."""
    verify: bool = True
    """Verify TLS certificates. Turn off only for testing."""
    proxy: str | None = None
    """Proxy URL (``http://``, ``https://`` or ``socks5://``) for every request."""
    max_redirects: Annotated[int, Field(ge=0)] = 10
    """Redirect hops followed from one URL before it is recorded ``too_many_redirects``."""


class RobotsConfig(_Model):
    """robots.txt handling."""

    obey: bool = True
    """Honour robots.txt."""


class ExtractConfig(_Model):
    """What links are taken out of pages."""

    assets: bool = False
    """Also follow page assets: ``img``, ``script``, ``source``, ``srcset``, ``iframe``."""


class OutputConfig(_Model):
    """Where and how results are written."""

    dir: Path = Path("./out")
    """Output folder: bodies, ``manifest.jsonl`` and the state database."""
    layout: Literal["mirror", "flat"] = "mirror"
    """``mirror``: ``host/path``; ``flat``: ``host/<sha256 of URL>`` plus the path's suffix."""


class DownloadConfig(_Model):
    """Bulk downloads (``crawler fetch``, or a job with ``follow: false``).

    A file is not a page: by default there is no size cap and no total deadline, only an idle
    timeout, and an interrupted file is resumed with ``Range`` + ``If-Range``.
    """

    max_bytes: PositiveInt | None = None
    """Cap on one file's size (None: no cap); a larger file is recorded as ``too_large``."""
    max_time_s: PositiveFloat | None = None
    """Total deadline for one request, headers and body (None: none)."""
    idle_timeout_s: PositiveFloat = 60.0
    """A file that receives no byte for this long is cut off (``timeout``; its partial kept)."""
    attempts: PositiveInt = 3
    """Tries per file within one run; each retry resumes the partial file where it can."""
    content_disposition: bool = False
    """Name files from the Content-Disposition header (sanitized) instead of the URL path."""
    chunk_bytes: PositiveInt = 1 << 20
    """Write buffer per file; larger buffers mean fewer system calls."""


class LoggingConfig(_Model):
    """Log output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"
    """``auto``: console on a terminal, JSON lines otherwise."""


class JobConfig(_Model):
    """One crawl job, validated once."""

    name: str = "crawl"
    """A name for logs and the summary."""
    seeds: tuple[str, ...] = ()
    """Start URLs (http or https)."""
    seeds_file: Path | None = None
    """A file of start URLs, one per line (``#`` comments and blank lines ignored)."""
    scope: ScopeConfig = ScopeConfig()
    limits: LimitsConfig = LimitsConfig()
    http: HttpConfig = HttpConfig()
    robots: RobotsConfig = RobotsConfig()
    extract: ExtractConfig = ExtractConfig()
    output: OutputConfig = OutputConfig()
    logging: LoggingConfig = LoggingConfig()
    follow: bool = True
    """Follow links (a crawl). False: download exactly the seeds (``crawler fetch`` semantics;
    ``seeds_file`` may then carry ``sha256=HEX`` and a file name per line)."""
    download: DownloadConfig = DownloadConfig()
    """Bulk download settings (used when ``follow`` is false and by ``crawler fetch``)."""

    @field_validator("seeds")
    @classmethod
    def _seeds_are_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, seed in enumerate(value):
            problem = _url_problem(seed)
            if problem:
                raise ValueError(f"seed {index} {seed!r}: {problem}")
        return value

    @model_validator(mode="after")
    def _has_seeds(self, info: ValidationInfo) -> JobConfig:
        if info.context and info.context.get("seeds_optional"):
            return self  # ``crawler fetch --job``: the URL list comes from the command line
        if not self.seeds and self.seeds_file is None:
            raise ValueError("the job needs seeds or seeds_file")
        return self

    def seed_hosts(self) -> tuple[str, ...]:
        """Lower-case hosts of the inline seeds, in order, without repeats."""
        hosts = (urlsplit(s).hostname or "" for s in self.seeds)
        return tuple(dict.fromkeys(h for h in hosts if h))


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if not parts.hostname:
        return "no host"
    return None


def read_seeds_file(path: Path) -> list[str]:
    """The URLs in a seeds file; a bad line raises ConfigError naming ``FILE:LINE``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read seeds file: {exc}") from None
    seeds = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        problem = _url_problem(line)
        if problem:
            raise ConfigError(f"{path}:{lineno}: {line!r}: {problem}")
        seeds.append(line)
    return seeds


def _yaml_line(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc``, as deep as it exists."""
    node, line = root, None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                # An unknown key: point at the key itself.
                match = next((k for k, _ in node.value if k.value == key), None)
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _format_error(source: str, root: yaml.Node | None, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if isinstance(p, int | str)]
    where = ".".join(str(p) for p in loc) or "(top level)"
    line = _yaml_line(root, loc)
    at = f"{source}:{line}" if line else source
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in err and not isinstance(err["input"], dict | list):
        msg = f"{msg} (got {err['input']!r})"
    more = len(exc.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{at}: {where}: {msg}{tail}"


def job_from_mapping(
    data: Any,
    *,
    source: str = "<job>",
    base_dir: Path | None = None,
    root: yaml.Node | None = None,
    seeds_optional: bool = False,
) -> JobConfig:
    """Validate a parsed job; relative paths are resolved against ``base_dir``.

    ``seeds_optional``: the job only supplies settings (``crawler fetch --job``). A job with
    ``follow: false`` keeps ``seeds_file`` unread: the download list parser reads it.
    Raises ConfigError with one line: ``SOURCE[:LINE]: yaml.path: problem``.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the job must be a YAML mapping, not {type(data).__name__}")
    try:
        job = JobConfig.model_validate(data, context={"seeds_optional": seeds_optional})
    except ValidationError as exc:
        raise ConfigError(_format_error(source, root, exc)) from None
    if base_dir is not None:
        job = _resolve_paths(job, base_dir)
    if job.http.auth is not None:
        _check_auth_env(job.http.auth, source)
    if job.http.ca_bundle is not None and not job.http.ca_bundle.is_file():
        raise ConfigError(f"{source}: http.ca_bundle: no such file: {job.http.ca_bundle}")
    if not job.follow or seeds_optional:
        if job.seeds_file is not None and not job.seeds_file.is_file():
            raise ConfigError(f"{source}: seeds_file: no such file: {job.seeds_file}")
        return job
    if job.seeds_file is not None:
        seeds = (*job.seeds, *read_seeds_file(job.seeds_file))
        job = job.model_copy(update={"seeds": tuple(dict.fromkeys(seeds))})
    if not job.seeds:
        raise ConfigError(f"{source}: seeds: no seed URLs (seeds_file is empty)")
    return job


def _resolve_paths(job: JobConfig, base: Path) -> JobConfig:
    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    output = job.output.model_copy(update={"dir": rel(job.output.dir)})
    update: dict[str, Any] = {"output": output}
    if job.seeds_file is not None:
        update["seeds_file"] = rel(job.seeds_file)
    if job.http.ca_bundle is not None:
        update["http"] = job.http.model_copy(update={"ca_bundle": rel(job.http.ca_bundle)})
    return job.model_copy(update=update)


def _check_auth_env(auth: AuthConfig, source: str) -> None:
    names = [auth.token_env] if auth.type == "bearer" else [auth.username_env, auth.password_env]
    for name in names:
        if name and name not in os.environ:
            raise ConfigError(f"{source}: http.auth: environment variable {name} is not set")


def load_job(path: Path, *, seeds_optional: bool = False) -> JobConfig:
    """Read, parse and validate a job file. Relative paths are relative to the file's folder.

    ``seeds_optional``: see :func:`job_from_mapping`.

    Raises ConfigError (one line naming the file, line, YAML path and problem).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read job file: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{at}: invalid YAML: {problem}") from None
    return job_from_mapping(
        data, source=str(path), base_dir=path.parent, root=root, seeds_optional=seeds_optional
    )
