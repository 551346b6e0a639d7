"""Chapters stay true: each notebook matches its lesson and executes from a clean kernel."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import notebooks  # noqa: E402

LESSONS = notebooks.lessons()


def test_there_are_lessons():
    assert len(LESSONS) >= 2


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_notebook_matches_lesson(lesson):
    import jupytext
    import nbformat
    nbpath = notebooks.notebook_for(lesson)
    assert nbpath.exists(), f"{nbpath.name} missing: run `make notebooks`"
    built = notebooks.cells_of(nbformat.read(nbpath, as_version=4))
    assert built == notebooks.cells_of(jupytext.read(lesson)), \
        f"{nbpath.name} differs from {lesson.name}: run `make notebooks`"
    # A built notebook keeps its outputs (GitHub shows them): some code cell produced output.
    nb = nbformat.read(nbpath, as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{nbpath.name} has no outputs: it was not executed"


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_executes(lesson):
    nb = notebooks.execute(lesson)  # raises CellExecutionError on any failing cell/assert
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
