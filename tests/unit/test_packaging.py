"""pyproject's package list matches the folders (design.md: every code folder at
the top is one subpackage of `juggler`): a new folder that is not listed would
be missing from `pip install juggler`, and a listed one that is gone breaks it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Folders with Python code that are not part of the distribution.
NOT_SHIPPED = {"tests", "benchmarks", "scripts", "build", "dist"}


def _config() -> tuple[list[str], dict[str, str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return list(setuptools["packages"]), dict(setuptools["package-dir"])


def _code_packages() -> set[str]:
    """Every folder holding an __init__.py, as the `juggler.` name it must have."""
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        top = rel.parts[0]
        if top.startswith(".") or top in NOT_SHIPPED or "egg-info" in top:
            continue
        found.add("juggler" if top == "juggler" else ".".join(("juggler", *rel.parts)))
    return found


def test_every_package_folder_is_listed_and_every_listed_one_exists() -> None:
    packages, _ = _config()
    code = _code_packages()
    assert sorted(code - set(packages)) == [], "folders missing from pyproject's packages"
    assert sorted(set(packages) - code) == [], "pyproject lists packages with no folder"


def test_every_top_level_package_maps_to_its_folder() -> None:
    packages, dirs = _config()
    for name in packages:
        parts = name.split(".")
        if len(parts) > 2:
            continue  # a subpackage lives inside its parent's folder
        folder = dirs.get(name)
        assert folder is not None, f"{name} has no package-dir entry"
        expected = "juggler" if name == "juggler" else parts[1]
        assert folder == expected, f"{name} maps to {folder!r}, not {expected!r}"
        assert (ROOT / folder / "__init__.py").is_file()
    # …and nothing else is mapped.
    assert set(dirs) <= set(packages)


def test_no_code_folder_at_the_top_is_left_out() -> None:
    """A top-level folder of Python modules without an __init__.py would be
    skipped silently by setuptools."""
    for folder in ROOT.iterdir():
        if (not folder.is_dir() or folder.name.startswith(".") or folder.name in NOT_SHIPPED
                or folder.name == "proto" or "egg-info" in folder.name):
            continue
        if any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), f"{folder.name}/ has modules but no package"


def test_test_files_have_names_of_their_own() -> None:
    """pytest imports test files by their base name (tests/ is no package): a
    unit and an integration test of the same name stop the whole run."""
    root = Path(__file__).resolve().parent.parent
    names = [p.name for p in root.glob("*/test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
