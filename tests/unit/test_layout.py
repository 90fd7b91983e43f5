"""The test tree mirrors the packages: every folder holding Python is a package (imported
as ``tests.<tier>.<package>.<module>``), shared helpers live in ``tests/support`` and are
imported by their full name, nothing edits the import path, and no file repeats its
folder's name as a prefix (``tests/unit/schemas/test_codec.py``, not ``test_schemas_codec``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
TESTS = Path(__file__).resolve().parents[1]
SKIP = {"__pycache__", "artifacts", "node_modules"}
# an edit of the interpreter's import path, however spelled (the words are split so that
# this file does not match itself)
PATH_EDIT = re.compile(r"\bsys\s*\.\s*" + "path" + r"\s*(\.\s*(insert|append|extend)\b|\+=)")


def _files() -> list[Path]:
    return [p for p in TESTS.rglob("*")
            if p.is_file() and not SKIP & set(p.relative_to(TESTS).parts)]


def test_every_folder_holding_python_is_a_package() -> None:
    folders = {p.parent for p in _files() if p.suffix == ".py"}
    missing = sorted(str(f.relative_to(TESTS.parent)) for f in folders
                     if not (f / "__init__.py").is_file())
    assert not missing, (
        f"test folders without __init__.py: {missing}; add an empty __init__.py so the "
        "modules import as tests.<tier>.<package>.<module> (pytest would otherwise import "
        "them by file name, and two files of the same name in different folders clash)")


def test_nothing_under_tests_edits_the_import_path() -> None:
    found = []
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary data (fixtures, screenshots)
        for n, line in enumerate(text.splitlines(), 1):
            if PATH_EDIT.search(line):
                found.append(f"{path.relative_to(TESTS.parent)}:{n}: {line.strip()}")
    assert not found, (
        f"import path edited in {found}; move the shared code to tests/support/ and import "
        "it as `from tests.support.<module> import ...`")


def test_no_test_file_repeats_its_folder_name() -> None:
    repeated = sorted(
        str(p.relative_to(TESTS.parent)) for p in _files()
        if p.suffix == ".py" and p.stem.startswith(f"test_{p.parent.name}_"))
    assert not repeated, (
        f"{repeated}: the folder already names the package; drop the prefix "
        "(`git mv tests/unit/schemas/test_schemas_codec.py tests/unit/schemas/test_codec.py`)")
