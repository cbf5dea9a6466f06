"""``python -m crawler``: the same command line as the ``crawler`` console script."""

from crawler.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
