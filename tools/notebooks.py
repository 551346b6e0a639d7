"""Build and check the chapter notebooks.

Each chapter has one lesson source, ``lessons/NN_name.py`` (jupytext "percent" format, so it
diffs and reviews like code), and one executed notebook, ``notebooks/NN_name.ipynb``, with
outputs kept so GitHub shows them.

    python tools/notebooks.py build [NN ...]   # lessons -> executed notebooks
    python tools/notebooks.py check            # every notebook matches its lesson

``make test`` runs the check and executes every lesson from a clean kernel
(tests/test_notebooks.py).
"""
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = 300  # seconds per cell (the slowest cell takes well under a minute here)


def lessons():
    return sorted(p for p in LESSONS.glob("[0-9][0-9]_*.py"))


def notebook_for(lesson: Path) -> Path:
    return NOTEBOOKS / (lesson.stem + ".ipynb")


def cells_of(nb):
    """The part of a notebook that must match its lesson: cell types and sources."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def execute(lesson: Path, attempts=2):
    """Execute a lesson from a clean kernel, working in notebooks/; return the notebook.

    A cell that gets no reply within TIMEOUT is run again with the whole lesson, once, in a
    fresh kernel. Twice in CI a lesson stalled: the second time (2026-12-02) py-spy showed the
    kernel idle in its event loop and the client waiting for a reply that never came. A cell
    that is really too slow times out twice and fails."""
    from nbclient.exceptions import CellTimeoutError
    for attempt in range(1, attempts + 1):
        nb = jupytext.read(lesson)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        try:
            NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                           resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
            return nb
        except CellTimeoutError:
            if attempt == attempts:
                raise
            print(f"{lesson.name}: a cell got no reply in {TIMEOUT} s; running the lesson "
                  f"again in a fresh kernel", file=sys.stderr)


def build(selected=()):
    NOTEBOOKS.mkdir(exist_ok=True)
    for lesson in lessons():
        if selected and not any(lesson.stem.startswith(s) for s in selected):
            continue
        t0 = time.perf_counter()
        nb = execute(lesson)
        nbformat.write(nb, notebook_for(lesson))
        print(f"built {notebook_for(lesson).relative_to(ROOT)} in {time.perf_counter() - t0:.1f}s")


def mismatches():
    """Lessons whose notebook is missing or differs from the lesson source."""
    bad = []
    for lesson in lessons():
        nbpath = notebook_for(lesson)
        if not nbpath.exists():
            bad.append(f"{nbpath.name}: missing (run `make notebooks`)")
        elif cells_of(nbformat.read(nbpath, as_version=4)) != cells_of(jupytext.read(lesson)):
            bad.append(f"{nbpath.name}: differs from {lesson.name} (run `make notebooks`)")
    return bad


def main(argv):
    if not argv or argv[0] not in ("build", "check"):
        print(__doc__)
        return 2
    if argv[0] == "build":
        build(argv[1:])
        return 0
    bad = mismatches()
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
