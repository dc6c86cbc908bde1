"""The documentation: the MkDocs site builds with ``--strict`` (every page in the nav, every link and anchor
found, every docstring of the Python API page read), and the pages speak of the project only (no issue numbers).

MkDocs and mkdocstrings are dev dependencies (``pip install -e ".[dev]"``, which ``scripts/test.sh`` runs), so the
build is never skipped: without them it fails with Python's "No module named mkdocs".
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"mkdocs build --strict failed (exit {run.returncode}):\n{run.stdout}{run.stderr}"
    assert (site / "index.html").is_file()
    assert (site / "reference" / "python" / "index.html").is_file()
    api = (site / "reference" / "python" / "index.html").read_text(encoding="utf-8")
    for name in ("glmmlab.glmm", "glmmlab.fit_glmm", "glmmlab.ModelSpec", "glmmlab.GlmmResult", "conf_int"):
        assert name in api, f"the Python API page has no entry for {name}"


ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+|(?<![\w&/])#\d+\b", re.IGNORECASE)


def test_docs_speak_of_the_project_only() -> None:
    assert PAGES, "docs/ holds no page"
    found = []
    for path in PAGES:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ISSUE_NUMBER.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "issue numbers in the documentation:\n" + "\n".join(found)
