"""The documentation: the MkDocs site builds with ``--strict`` (every page in the nav, every link and anchor
found, every docstring of the Python API page read), the README's links to files of the repository resolve, its
Python quick start runs, and the README and the pages speak of the project only (no issue numbers).

MkDocs and mkdocstrings are dev dependencies (``pip install -e ".[dev]"``, which ``scripts/test.sh`` runs), so the
build is never skipped: without them it fails with Python's "No module named mkdocs".
"""

from __future__ import annotations

import os
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
    # the result's accessors that its mixins define (pandas views, prediction, intervals) are on the page too
    for member in ("params", "bse", "fixef", "llf", "predict", "conf_int"):
        assert f'id="glmmlab.engine.inference.results.GlmmResult.{member}"' in api, (
            f"the Python API page has no entry for GlmmResult.{member}")


def _links(markdown: str) -> list[str]:
    """The targets of the Markdown links and images of a text, without anchors."""
    return [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", markdown)]


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    local = [t for t in _links(readme) if t and not re.match(r"[a-z]+:", t)]
    assert local, "the README links to no file of the repository"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_python_quick_start_runs() -> None:
    """The README's Python block, run as it is from the repository root (it reads ../shared's sleepstudy)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no Python quick start"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    run = subprocess.run([sys.executable, "-c", blocks[0]], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=env)
    assert run.returncode == 0, f"the README's Python quick start failed:\n{run.stdout[-2000:]}{run.stderr[-3000:]}"
    assert "GLMM: Reaction ~ Days + (Days | Subject)" in run.stdout


ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\d+|(?<![\w&/])#\d+\b", re.IGNORECASE)


def test_docs_speak_of_the_project_only() -> None:
    assert PAGES, "docs/ holds no page"
    found = []
    for path in [ROOT / "README.md", *PAGES]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ISSUE_NUMBER.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "issue numbers in the documentation:\n" + "\n".join(found)
