"""crawler: an async, concurrent web fetcher and crawler.

The package tree is the data-flow diagram (see ``engine.py``'s docstring): ``frontier`` →
``scheduler`` → ``fetcher`` → ``storage`` → ``extract`` → back to ``frontier``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
