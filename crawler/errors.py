"""The crawler's one exception tree.

Exceptions are for bugs and for bad input the user must fix. Everything that can happen to a
single URL (a 404, a timeout, a too-large body, a URL out of scope) is an outcome *value*
(:class:`crawler.models.Outcome`), recorded in the manifest, never raised out of a worker.

    CrawlerError            base of everything raised on purpose by this package
    ├── ConfigError         the job file or a command-line value is wrong: the message names
    │                       where (file, YAML path, line) and what
    └── StateError          the output folder's state cannot be used (locked by another run,
                            written by an incompatible version, corrupt)
"""

from __future__ import annotations

__all__ = ["ConfigError", "CrawlerError", "StateError"]


class CrawlerError(Exception):
    """Base class of the exceptions this package raises on purpose."""


class ConfigError(CrawlerError):
    """Bad user input: the message is one line naming the place and the problem."""


class StateError(CrawlerError):
    """The job's state (SQLite file, output folder) cannot be opened or used."""
