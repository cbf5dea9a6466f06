"""The architecture, enforced: stages never import each other; each third-party library
lives in one module (../shared/DESIGN.md, STYLE.md 1-2)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "crawler"
STAGES = {"frontier", "scheduler", "fetcher", "storage", "extract"}
# library -> the only modules allowed to import it
OWNERS = {
    "httpx2": {"fetcher"},
    "httpcore2": {"fetcher", "netio"},
    "httpx": set(),
    "selectolax": {"extract"},
    "yaml": {"config"},
    "pydantic": {"config"},
    "w3lib": {"urls"},
    "hypercorn": {"benchsite"},
    "trustme": {"benchsite"},
    "rich": {"cli"},
    "typer": {"cli"},
    "protego": {"robots"},
    "defusedxml": {"sitemaps"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_stages_do_not_import_each_other() -> None:
    """Only engine.py wires stages together."""
    for stage in STAGES:
        used = {
            m.split(".")[1] for m in imports(PACKAGE / f"{stage}.py") if m.startswith("crawler.")
        }
        assert not used & (STAGES - {stage}), f"{stage} imports {used & STAGES}"


def test_third_party_libraries_live_in_one_module() -> None:
    """httpx2 only in the fetcher, selectolax only in extract, yaml/pydantic only in config..."""
    for path in PACKAGE.glob("*.py"):
        for module in imports(path):
            top = module.split(".")[0]
            if top in OWNERS:
                assert path.stem in OWNERS[top], f"{path.name} imports {top}"


def test_every_module_declares_all_and_a_docstring() -> None:
    """Explicit public surface and a docstring saying what the module owns."""
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), path.name
        names = {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name)
        }
        assert "__all__" in names, path.name


# Modules that wire stages together: the crawl engine, the bulk-download pipeline and the
# crawl's fetch stage (fetch, store, extract; in this process or in worker processes).
WIRING = {"engine", "download", "workers"}


def test_only_wiring_modules_import_several_stages() -> None:
    """engine.py, download.py and workers.py are the only modules that know several stages."""
    for path in PACKAGE.glob("*.py"):
        used = {m.split(".")[1] for m in imports(path) if m.startswith("crawler.")} & STAGES
        if len(used) > 1:
            assert path.stem in WIRING, f"{path.name} wires {sorted(used)}"
