"""Every committed job notebook is a clean papermill template: one parameters cell, no outputs."""

import ast

import nbformat
import pytest

from cio_mavera.reports import JOBS, NOTEBOOKS_DIR, notebook_parameters


@pytest.fixture(params=sorted(JOBS), ids=str)
def notebook(request):
    return nbformat.read(NOTEBOOKS_DIR / JOBS[request.param].notebook, as_version=4)


def test_each_job_has_its_notebook():
    assert all((NOTEBOOKS_DIR / job.notebook).is_file() for job in JOBS.values())


def test_exactly_one_parameters_cell_right_after_the_title(notebook):
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    assert tagged[0] == 1


def test_parameters_are_plain_literals(notebook):
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign | ast.AnnAssign), ast.dump(node)
        ast.literal_eval(node.value)  # raises for anything computed


def test_committed_without_outputs_or_execution_counts(notebook):
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


def test_kernel_is_the_portable_python3(notebook):
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_no_parameter_looks_like_a_secret():
    for job in JOBS.values():
        names = notebook_parameters(NOTEBOOKS_DIR / job.notebook)
        assert not [n for n in names if any(w in n.lower() for w in ("key", "secret", "token", "password"))]


def test_the_landing_notebook_links_every_job_and_says_which_mode_each_gets(capsys, monkeypatch):
    landing = nbformat.read(NOTEBOOKS_DIR / "00_start_here.ipynb", as_version=4)
    text = "\n".join(c.source for c in landing.cells if c.cell_type == "markdown")
    assert all(f"]({job.notebook})" in text for job in JOBS.values())
    assert all(not c.outputs for c in landing.cells if c.cell_type == "code")
    monkeypatch.setenv("CIO_MAVERA_MODE", "sandbox")
    for cell in landing.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, "00_start_here", "exec"), {})  # our own notebook's cell
    out = capsys.readouterr().out
    assert all(f"{job.name}" in out and "-> sandbox" in out for job in JOBS.values())
