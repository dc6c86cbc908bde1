"""One table of file suffixes (services/project/formats.py): the importer, the web upload and the command line agree."""

from __future__ import annotations

import subprocess
import sys

import pytest

from glmmlab.services.project import formats, importing

TAB_TEXT = "y\tx\tg\n1.5\t2\ta\n2.5\t3\tb\n3.5\t1\ta\n"


@pytest.mark.parametrize("name, fmt", [("a.csv", "csv"), ("A.CSV", "csv"), ("a.tsv", "tsv"), ("a.tab", "tsv"),
                                       ("a.txt", "tsv"), ("a.parquet", "parquet"), ("a.pq", "parquet"),
                                       ("a.xlsx", None), ("a", None), (None, None)])
def test_the_table(name, fmt):
    assert formats.format_of_name(name) == fmt


def test_txt_is_tab_separated_in_the_importer(project, tmp_path):
    path = tmp_path / "export.txt"
    path.write_text(TAB_TEXT)
    info = importing.import_dataset(project, path, "export")
    assert [c.name for c in info.columns] == ["y", "x", "g"] and info.n_rows == 3
    assert info.operation["format"] == "tsv"


def test_txt_is_tab_separated_on_the_command_line(tmp_path):
    path = tmp_path / "export.txt"
    path.write_text(TAB_TEXT)
    code = ("from glmmlab.interfaces.cli import read_table; import sys; "
            "print(list(read_table(sys.argv[1]).columns))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['y', 'x', 'g']"
