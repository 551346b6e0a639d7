"""Exercises to attempt (issue 13): every exercise of every chapter states its task, hides one
solution in a collapsed cell, and checks the answer with ``assert`` in a visible cell after it.

The shape every lesson follows under its ``## Exercises`` heading::

    # %% [markdown]
    # **1.** The task, and the name the answer goes into (``answer_1``).

    # %% jupyter={"source_hidden": true}
    # solution
    answer_1 = ...

    # %%
    assert ...   # checks answer_1 against the library, a property or a hand-worked value

The notebook GitHub shows keeps the metadata (Jupyter collapses the solution's source), and
CI executes the solutions with the rest of the notebook (test_notebooks.py).
"""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import notebooks  # noqa: E402

LESSONS = notebooks.lessons()
EXERCISE = re.compile(r"^\*\*(\d+)\.\*\*", re.M)  # a line that opens exercise N


def _hidden(cell):
    return bool(cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"))


def exercises(nb):
    """[(number, [cells of the exercise: its task cell and the cells up to the next one])]
    for the cells after the notebook's ``## Exercises`` heading."""
    start = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                  and re.search(r"^#+ Exercises", c.source, re.M)), None)
    if start is None:
        return []
    out = []
    for c in nb.cells[start:]:
        numbers = EXERCISE.findall(c.source) if c.cell_type == "markdown" else []
        for n in numbers:  # (a cell that opens two exercises leaves the first without cells)
            out.append((int(n), [c]))
        if not numbers and out:
            out[-1][1].append(c)
    return out


def _problems(nb):
    found = exercises(nb)
    if not found:
        return ["no exercises (a '## Exercises' heading, then '**1.** ...' markdown cells)"]
    problems = []
    if [n for n, _ in found] != list(range(1, len(found) + 1)):
        problems.append(f"exercises numbered {[n for n, _ in found]}")
    for n, cells in found:
        code = [c for c in cells if c.cell_type == "code"]
        hidden = [i for i, c in enumerate(code) if _hidden(c)]
        checks = [i for i, c in enumerate(code) if not _hidden(c)
                  and re.search(r"^\s*assert\b", c.source, re.M)]
        if not hidden:
            problems.append(f"exercise {n}: no solution cell with source_hidden")
        elif not checks or max(checks) < min(hidden):
            problems.append(f"exercise {n}: no visible checking cell (assert) after the solution")
        if any(re.search(r"^\s*assert\b", code[i].source, re.M) for i in hidden):
            problems.append(f"exercise {n}: the hidden solution cell asserts (the check belongs "
                            "in the visible cell)")
    return problems


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_exercise_has_a_hidden_solution_and_a_check(lesson):
    import jupytext
    problems = _problems(jupytext.read(lesson))
    assert not problems, f"{lesson.name}: " + "; ".join(problems)


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_the_notebook_keeps_the_solutions_collapsed(lesson):
    """The committed notebook has the same hidden cells as its lesson (jupytext keeps the
    metadata; a notebook built before the lesson hid its solutions would not)."""
    import jupytext
    import nbformat
    lesson_nb = jupytext.read(lesson)
    nb = nbformat.read(notebooks.notebook_for(lesson), as_version=4)
    hidden = [c.source for c in lesson_nb.cells if c.cell_type == "code" and _hidden(c)]
    assert [c.source for c in nb.cells if c.cell_type == "code" and _hidden(c)] == hidden


def test_the_rule_itself():
    """The checker on hand-made cells: a solved-in-place exercise fails, the shape passes."""
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    task = new_markdown_cell("**1.** Compute the IoU of two boxes into `answer_1`.")
    solution = new_code_cell("answer_1 = 50 / 150",
                             metadata={"jupyter": {"source_hidden": True}})
    check = new_code_cell("assert abs(answer_1 - 1 / 3) < 1e-12")
    head = new_markdown_cell("## Exercises")
    good = new_notebook(cells=[head, task, solution, check])
    assert _problems(good) == []
    solved_in_place = new_notebook(cells=[head, task, new_code_cell(
        "answer_1 = 50 / 150\nassert abs(answer_1 - 1 / 3) < 1e-12")])
    assert _problems(solved_in_place) == ["exercise 1: no solution cell with source_hidden"]
    check_first = new_notebook(cells=[head, task, check, solution])
    assert _problems(check_first) == [
        "exercise 1: no visible checking cell (assert) after the solution"]
    assert _problems(new_notebook(cells=[new_markdown_cell("# no exercises")])) == [
        "no exercises (a '## Exercises' heading, then '**1.** ...' markdown cells)"]
