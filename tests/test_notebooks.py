"""Chapters stay true: each notebook matches its lesson and executes from a clean kernel.

A chapter cannot quietly disappear (the list below is the README's table of chapters), a
committed notebook cannot show an error output, and no cell can opt out of execution with
nbclient's ``skip-execution`` tag (or be allowed to fail with ``raises-exception``).
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import notebooks  # noqa: E402

LESSONS = notebooks.lessons()

# The chapters of the README's table, in order: one lesson and one notebook each.
CHAPTERS = [
    "00_overview",
    "01_layers_and_backprop",
    "02_backbone",
    "03_boxes_and_anchors",
    "04_rpn_targets",
    "05_rpn_head_and_loss",
    "06_proposals_and_nms",
    "07_roi_sampling_and_targets",
    "08_roipool_vs_roialign",
    "09_heads_and_losses",
    "10_training",
    "11_inference_and_evaluation",
    "12_gpu_kernels",
    "13_checking_against_torchvision",
    "14_ablations",
    "15_keypoints",
]
# nbclient's tags that let a cell escape the "every cell runs and none fails" rule
ESCAPE_TAGS = {"skip-execution", "raises-exception"}


def _tags(nb):
    return {t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])}


def test_every_chapter_has_its_lesson_and_notebook():
    assert [p.stem for p in LESSONS] == CHAPTERS
    assert sorted(p.stem for p in notebooks.NOTEBOOKS.glob("*.ipynb")) == CHAPTERS


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_committed_notebook_is_clean(lesson):
    """The notebook GitHub shows: no error output, no escape tag, every code cell executed
    once, in order (execution counts 1, 2, ..., n), in the lesson and in the notebook alike."""
    import jupytext
    import nbformat
    nbpath = notebooks.notebook_for(lesson)
    assert nbpath.exists(), f"{nbpath.name} missing: run `make notebooks`"
    nb = nbformat.read(nbpath, as_version=4)
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
              if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{nbpath.name}: error outputs in cells {errors}"
    assert not _tags(nb) & ESCAPE_TAGS, f"{nbpath.name}: tags {sorted(_tags(nb) & ESCAPE_TAGS)}"
    assert not _tags(jupytext.read(lesson)) & ESCAPE_TAGS, \
        f"{lesson.name}: tags {sorted(_tags(jupytext.read(lesson)) & ESCAPE_TAGS)}"
    counts = [c.get("execution_count") for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), \
        f"{nbpath.name}: execution counts {counts}: not executed top to bottom from a clean kernel"


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
