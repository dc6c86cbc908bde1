"""A griffe extension for the Python API page (mkdocs.yml loads it): glmmlab's docstrings are written for
reading in the source and in ``help()``; two of their habits would print badly as Markdown, so they are
rewritten for the page only.

- Sphinx roles (:class:`~glmmlab.engine.spec.ModelSpec`, :func:`fit_glmm`) become code: the name as written, or
  its last part when it starts with ``~`` (Sphinx's short form).
- A list that starts right after a line of text (``method``:\\n- "wald": ...) gets the blank line Markdown needs
  to see a list.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
LIST_AFTER_TEXT = re.compile(r"(?m)^(?![-*] |\s)(.*\S)\n(?=[-*] )")


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
