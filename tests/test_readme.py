"""The README renders as written: its tables are tables (a CommonMark parser with GitHub's table extension reads
them), with the rows a reader looks for, and its commands are the ones this checkout provides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

README = Path(__file__).resolve().parents[1] / "README.md"


def tables() -> list[list[list[str]]]:
    """Every table of the README: its rows (header first), each a list of cell texts."""
    found: list[list[list[str]]] = []
    row: list[str] | None = None
    for token in MarkdownIt("commonmark").enable("table").parse(README.read_text(encoding="utf-8")):
        if token.type == "table_open":
            found.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            found[-1].append(row)
            row = None
    return found


def first_column(header: str) -> list[str]:
    table = next(t for t in tables() if t[0][0] == header)
    return [re.sub(r"\*\*(.+)\*\*", r"\1", cells[0]) for cells in table[1:]]


def test_no_table_row_falls_out_of_its_table():
    """A line starting with '|' that is not part of a table renders as text (e.g. after a blank line)."""
    stray = [token.content for token in MarkdownIt("commonmark").enable("table").parse(README.read_text(encoding="utf-8"))
             if token.type == "inline" and token.content.lstrip().startswith("|")]
    assert stray == []


def test_the_widgets_table_lists_all_eight_widgets():
    assert first_column("Widget") == ["Load case", "Segment", "Edit labels", "Refine with clicks",
                                      "Export corrections", "Review and report", "Retrain", "Prepare study"]


def test_the_labels_table_lists_the_brats_labels():
    assert first_column("Label") == ["0", "1", "2", "4"]


@pytest.mark.parametrize("figure", ["validation Dice WT / TC / ET", "`predict` on one", "loading a case"])
def test_the_figures_table_has_its_rows(figure):
    table = next(t for t in tables() if t[0] == ["", "figure"])
    assert any(cells[0].startswith(figure) for cells in table[1:])


def test_the_commands_use_the_projects_environment_and_show_skip_reasons():
    text = README.read_text(encoding="utf-8")
    assert "python -m pytest -ra" in text
    commands = [line for line in re.findall(r"^(?:\.venv/bin/)?\S+", text, flags=re.MULTILINE)
                if line in ("python", "napari-brainseg", "torchrun")]
    assert commands == [], "commands outside .venv (a bare python has no torch)"
