"""What the documentation build (mkdocs.yml) adds to MkDocs and mkdocstrings, for the pages only.

- ``on_page_markdown`` (an MkDocs hook): a pipe inside code in a table cell is written ``\\|`` in the pages, as
  GitHub needs to keep the cell whole; Python-Markdown keeps such a cell whole anyway and would print the
  backslash, so it is dropped there.
- ``DocstringsAsMarkdown`` (a griffe extension, for the Python API page): glmmlab's docstrings are written for
  reading in the source and in ``help()``, and two of their habits would print badly as Markdown. Sphinx roles
  (:class:`~glmmlab.engine.model.spec.ModelSpec`, :func:`fit_glmm`) become code: the name as written, or its last part
  when it starts with ``~`` (Sphinx's short form). A list that starts right after a line of text (``method``:
  then ``- "wald": ...``) gets the blank line Markdown needs to see a list.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

CODE = re.compile(r"`[^`\n]*`")
ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
LIST_AFTER_TEXT = re.compile(r"(?m)^(?![-*] |\s)(.*\S)\n(?=[-*] )")


def unescape_table_pipes(markdown: str) -> str:
    """``\\|`` inside code spans on table rows (lines that start with ``|``) as ``|``."""
    def row(line: str) -> str:
        if not line.lstrip().startswith("|"):
            return line
        return CODE.sub(lambda m: m.group(0).replace("\\|", "|"), line)

    return "\n".join(row(line) for line in markdown.split("\n"))


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return unescape_table_pipes(markdown)


def _code(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def as_markdown(text: str) -> str:
    """A docstring's text with Sphinx roles as code and a blank line before a list that follows text."""
    return LIST_AFTER_TEXT.sub(r"\1\n\n", ROLE.sub(_code, text))


class DocstringsAsMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_markdown(obj.docstring.value)
