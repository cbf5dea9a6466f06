"""Job configuration: YAML in, one frozen, validated :class:`JobConfig` out.

Owns: reading the job file, validating it once (pydantic, ``extra="forbid"``), resolving relative
paths against the job file's folder, and turning every problem into one :class:`ConfigError`
line that names the file, the YAML path and line, and what is wrong. After loading, nothing
looks a setting up by string key. Also owns the environment overrides for containers: a
``CRAWLER_<SECTION>__<FIELD>`` variable (``CRAWLER_LIMITS__CONCURRENCY=8``) sets one field of the
job, above the YAML and below command-line flags. Must not: do any network or crawl work. yaml
and pydantic are imported here and nowhere else.
"""

from __future__ import annotations

import copy
import os
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from crawler.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "AuthConfig",
    "DownloadConfig",
    "EnvOverride",
    "ExtractConfig",
    "HttpConfig",
    "JobConfig",
    "LimitsConfig",
    "LoggingConfig",
    "OutputConfig",
    "PerHostConfig",
    "RetriesConfig",
    "RobotsConfig",
    "ScopeConfig",
    "SitemapsConfig",
    "TimeoutsConfig",
    "TrapsConfig",
    "env_overrides",
    "iter_seeds_file",
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
    crawl_delay_max_s: Annotated[float, Field(ge=0)] = 30.0
    """Cap on a robots.txt ``Crawl-delay`` honoured as the host's minimum spacing."""
    adaptive: bool = True
    """Adapt each host's concurrency to its latency and errors (halve on 429 / 5xx bursts and
    timeouts, grow back on success), always within ``concurrency`` and ``rate``."""


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
    processes: Annotated[int, Field(ge=0)] = 1
    """Processes that fetch, store and parse pages (1: all in this process; 0: one per CPU).
    One coordinator keeps the state, scheduling and politeness; N fetch workers do the rest."""


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
    """robots.txt handling (RFC 9309)."""

    obey: bool = True
    """Honour robots.txt: fetched once per host before its first page; a disallowed URL is
    recorded ``robots_disallowed`` and never fetched."""
    cache_s: PositiveFloat = 86400.0
    """How long a host's robots.txt is used before it is fetched again."""
    max_bytes: PositiveInt = 512_000
    """robots.txt bytes parsed at most (RFC 9309 asks for at least 500 KiB)."""


class RetriesConfig(_Model):
    """Retrying transient failures. A retry goes back through the frontier with a not-before
    time, so no worker sleeps on it."""

    attempts: PositiveInt = 3
    """Requests made for one URL at most (1: never retry)."""
    statuses: tuple[int, ...] = (429, 500, 502, 503, 504)
    """HTTP statuses retried (connect errors, timeouts and protocol errors always are)."""
    backoff_base_s: PositiveFloat = 1.0
    """First retry delay; it doubles per attempt, with jitter (half to full delay)."""
    backoff_max_s: PositiveFloat = 60.0
    """Cap on one retry delay."""
    retry_after_max_s: Annotated[float, Field(ge=0)] = 600.0
    """Cap on a ``Retry-After`` pause of a whole host (429 / 503)."""


class SitemapsConfig(_Model):
    """Sitemaps as a source of URLs (they pass the same scope rules as links)."""

    enabled: bool = False
    """Read the ``Sitemap:`` lines of robots.txt (and ``/sitemap.xml``, below)."""
    probe: bool = True
    """When enabled, also try ``/sitemap.xml`` on each seed's host."""
    max_urls: PositiveInt = 50_000
    """URLs taken from one sitemap file at most (the protocol's limit)."""
    max_bytes: PositiveInt = 50_000_000
    """Uncompressed bytes of one sitemap file parsed at most (the protocol's limit)."""


class TrapsConfig(_Model):
    """Limits that cut off crawler traps; a trapped URL is recorded ``trap``, not fetched."""

    max_url_length: PositiveInt = 2048
    """Longest URL fetched."""
    max_path_segments: PositiveInt = 32
    """Most path segments (``/a/b/c`` has 3)."""
    max_segment_repeats: PositiveInt = 3
    """Most times one path segment may appear in a path (``/a/b/a/b/a/b/a``: ``a`` 4 times)."""
    max_per_pattern: PositiveInt | None = None
    """Most URLs admitted per pattern: the URL with every run of digits replaced (an infinite
    calendar's ``?month=2031-07`` pages share one). null: no limit."""


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
    durability: Literal["process", "power"] = "process"
    """``process``: a page is done once its file is renamed into place and its record committed
    (survives kill -9 / OOM: the page cache outlives the process). ``power``: also fsync each
    body file, its folders and the state before the commit that marks it done, batched (group
    commit), so a machine crash or power loss loses no page reported done."""


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
    """A file of start URLs, one per line (``#`` comments and blank lines ignored). It is
    checked line by line at load and streamed into the frontier at start, never held whole."""
    scope: ScopeConfig = ScopeConfig()
    limits: LimitsConfig = LimitsConfig()
    http: HttpConfig = HttpConfig()
    robots: RobotsConfig = RobotsConfig()
    retries: RetriesConfig = RetriesConfig()
    sitemaps: SitemapsConfig = SitemapsConfig()
    traps: TrapsConfig = TrapsConfig()
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

    # Found by the one streaming check of seeds_file at load (job_from_mapping).
    _file_hosts: tuple[str, ...] = PrivateAttr(default=())
    _file_seeds: int = PrivateAttr(default=0)

    def seed_hosts(self) -> tuple[str, ...]:
        """Lower-case hosts of the seeds (inline, then the seeds file's), without repeats."""
        hosts = (urlsplit(s).hostname or "" for s in self.seeds)
        return tuple(dict.fromkeys([*(h for h in hosts if h), *self._file_hosts]))

    def seed_count(self) -> int:
        """Inline seeds plus the seeds file's URL lines (repeats included)."""
        return len(self.seeds) + self._file_seeds

    def iter_seeds(self) -> Iterator[str]:
        """The seeds: inline ones, then the seeds file's, streamed (bounded memory).

        Raises ConfigError (``FILE:LINE``) if the file went bad since it was loaded.
        """
        yield from self.seeds
        if self.seeds_file is not None:
            yield from iter_seeds_file(self.seeds_file)


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


def iter_seeds_file(path: Path) -> Iterator[str]:
    """The URLs in a seeds file, one at a time (the file is never read whole); a bad line
    raises ConfigError naming ``FILE:LINE``."""
    try:
        f = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read seeds file: {exc}") from None
    lineno = 0
    with f:
        try:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                problem = _url_problem(line)
                if problem:
                    raise ConfigError(f"{path}:{lineno}: {line!r}: {problem}")
                yield line
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}:{lineno + 1}: cannot read seeds file: {exc}") from None


def read_seeds_file(path: Path) -> list[str]:
    """The URLs in a seeds file; a bad line raises ConfigError naming ``FILE:LINE``."""
    return list(iter_seeds_file(path))


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


def _format_error(
    source: str,
    root: yaml.Node | None,
    exc: ValidationError,
    env: Sequence[EnvOverride] = (),
) -> str:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if isinstance(p, int | str)]
    where = ".".join(str(p) for p in loc) or "(top level)"
    # A value that came from the environment is blamed on its variable, not on the YAML; so is
    # a section that fails as a whole (``http.auth``) when a variable set one of its fields.
    blamed = next((o for o in env if tuple(loc[: len(o.path)]) == o.path), None)
    if blamed is None and loc:
        blamed = next((o for o in env if o.path[: len(loc)] == tuple(loc)), None)
    line = _yaml_line(root, loc)
    if blamed is not None:
        at = f"environment variable {blamed.variable}"
    else:
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
    environ: Mapping[str, str] | None = None,
    seeds_optional: bool = False,
) -> JobConfig:
    """Validate a parsed job; relative paths are resolved against ``base_dir``.

    With ``environ``, its ``CRAWLER_…`` variables override ``data`` (see :func:`env_overrides`).
    ``seeds_optional``: the job only supplies settings (``crawler fetch --job``). A job with
    ``follow: false`` keeps ``seeds_file`` unread: the download list parser reads it.
    Raises ConfigError with one line: ``SOURCE[:LINE]: yaml.path: problem``, or
    ``environment variable NAME: path: problem`` when the bad value came from the environment.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the job must be a YAML mapping, not {type(data).__name__}")
    env = env_overrides(environ) if environ is not None else []
    if env:
        data = _with_overrides(data, env)
    try:
        job = JobConfig.model_validate(data, context={"seeds_optional": seeds_optional})
    except ValidationError as exc:
        raise ConfigError(_format_error(source, root, exc, env)) from None
    if base_dir is not None:
        job = _resolve_paths(job, base_dir)
    if job.http.auth is not None:
        _check_auth_env(job.http.auth, source, os.environ if environ is None else environ)
    if job.http.ca_bundle is not None and not job.http.ca_bundle.is_file():
        raise ConfigError(f"{source}: http.ca_bundle: no such file: {job.http.ca_bundle}")
    if not job.follow or seeds_optional:
        if job.seeds_file is not None and not job.seeds_file.is_file():
            raise ConfigError(f"{source}: seeds_file: no such file: {job.seeds_file}")
        return job
    if job.seeds_file is not None:
        # One streaming pass: every line checked (FILE:LINE), the hosts noted for the default
        # scope; the URLs themselves are streamed into the frontier when the crawl starts.
        count, hosts = 0, dict[str, None]()
        for url in iter_seeds_file(job.seeds_file):
            count += 1
            hosts[urlsplit(url).hostname or ""] = None
        job._file_seeds = count
        job._file_hosts = tuple(h for h in hosts if h)
    if job.seed_count() == 0:
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


def _check_auth_env(auth: AuthConfig, source: str, environ: Mapping[str, str]) -> None:
    names = [auth.token_env] if auth.type == "bearer" else [auth.username_env, auth.password_env]
    for name in names:
        if name and name not in environ:
            raise ConfigError(f"{source}: http.auth: environment variable {name} is not set")


ENV_PREFIX = "CRAWLER_"
_ENV_SEP = "__"


@dataclass(frozen=True, slots=True)
class EnvOverride:
    """One job setting given by an environment variable."""

    variable: str
    """The variable's name, e.g. ``CRAWLER_LIMITS__CONCURRENCY``."""
    path: tuple[str, ...]
    """The setting it sets, e.g. ``("limits", "concurrency")``."""
    value: Any
    """The value before validation: the text, or parsed YAML for lists and mappings."""


def _optional_parts(annotation: Any) -> tuple[Any, bool]:
    """``(T, allows_none)`` for ``T``, ``T | None`` and ``Annotated[T, ...]``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            inner, _ = _optional_parts(members[0])
            return inner, True
    return annotation, False


def _section(annotation: Any) -> type[BaseModel] | None:
    inner, _ = _optional_parts(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _env_setting(variable: str) -> tuple[tuple[str, ...], Any]:
    """The field path and annotation ``CRAWLER_A__B`` names; ConfigError if it names none."""
    parts = variable[len(ENV_PREFIX) :].lower().split(_ENV_SEP)
    model: type[BaseModel] = JobConfig
    path: list[str] = []
    annotation: Any = None
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join([*path, part]) if part else "(empty name)"
            raise ConfigError(f"environment variable {variable}: no such setting: {where}")
        path.append(part)
        annotation = field.annotation
        section = _section(annotation)
        last = index == len(parts) - 1
        if section is not None and last:
            raise ConfigError(
                f"environment variable {variable}: {'.'.join(path)} is a section; "
                f"set one of its fields with {variable}{_ENV_SEP}<FIELD>"
            )
        if section is None and not last:
            raise ConfigError(
                f"environment variable {variable}: no such setting: "
                f"{'.'.join(path)}.{'.'.join(parts[index + 1 :])}"
            )
        if section is not None:
            model = section
    return tuple(path), annotation


def _env_value(variable: str, text: str, annotation: Any) -> Any:
    inner, allows_none = _optional_parts(annotation)
    if allows_none and text == "null":
        return None
    if get_origin(inner) in (tuple, list, dict, Mapping) or inner in (tuple, list, dict):
        # Lists and mappings are written as YAML flow (JSON works too): [a.org, b.org].
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"environment variable {variable}: invalid YAML: {problem}") from None
    if inner is Path:
        # Like a path on the command line: relative to the current folder, not the job file.
        return os.path.abspath(text)
    return text


def env_overrides(environ: Mapping[str, str]) -> list[EnvOverride]:
    """The job settings given by ``CRAWLER_<SECTION>__<FIELD>`` variables, by variable name.

    ``__`` separates the levels (``CRAWLER_LIMITS__PER_HOST__RATE`` sets ``limits.per_host.rate``);
    top-level fields have no ``__`` (``CRAWLER_NAME``). A variable whose name contains ``__`` must
    name a setting; other ``CRAWLER_…`` variables that name no top-level field are not settings
    and are left alone (e.g. a token the job reads through ``http.auth.token_env``). An empty
    value counts as unset; ``null`` sets an optional field to None; lists and mappings are YAML
    flow (``[a.org, b.org]``); relative paths are relative to the current folder.
    Raises ConfigError (one line naming the variable) for a name that is no setting.
    """
    found = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        rest = variable[len(ENV_PREFIX) :].lower()
        if _ENV_SEP not in rest and rest not in JobConfig.model_fields:
            continue
        path, annotation = _env_setting(variable)
        text = environ[variable]
        if text == "":
            continue
        found.append(EnvOverride(variable, path, _env_value(variable, text, annotation)))
    return found


def _with_overrides(data: dict[str, Any], env: Sequence[EnvOverride]) -> dict[str, Any]:
    """A copy of ``data`` with each override set at its path (sections created as needed)."""
    merged = copy.deepcopy(data)
    for override in env:
        node = merged
        for key in override.path[:-1]:
            if node.get(key) is None:
                node[key] = {}
            child = node[key]
            if not isinstance(child, dict):
                break  # the YAML has a scalar where a section belongs: validation says so
            node = child
        else:
            node[override.path[-1]] = override.value
    return merged


def load_job(
    path: Path, *, environ: Mapping[str, str] | None = None, seeds_optional: bool = False
) -> JobConfig:
    """Read, parse and validate a job file. Relative paths are relative to the file's folder.

    ``CRAWLER_…`` variables in ``environ`` (default: the process environment) override the
    file's settings (:func:`env_overrides`); command-line flags are applied by the caller, above.
    ``seeds_optional``: see :func:`job_from_mapping`.
    Raises ConfigError (one line naming the file, line, YAML path and problem, or the variable).
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
        data,
        source=str(path),
        base_dir=path.parent,
        root=root,
        environ=os.environ if environ is None else environ,
        seeds_optional=seeds_optional,
    )
