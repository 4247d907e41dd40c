"""atomic_write: whole new content or the old file, never a torn or shared temporary file."""

from __future__ import annotations

import pytest

from cio_mavera.files import atomic_path, atomic_write, temporary_sibling


def test_atomic_write_replaces_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "state.json"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed half way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_temporary_names_are_unique_per_call(tmp_path):
    target = tmp_path / "state.json"
    names = {temporary_sibling(target) for _ in range(50)}
    assert len(names) == 50
    assert all(p.parent == tmp_path and p.name.startswith(".state.json.") for p in names)
