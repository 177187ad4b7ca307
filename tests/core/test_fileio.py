"""Atomic writes: all or nothing."""

import pytest

from talkinghead_jax.fileio import atomic_write_path


def test_success_renames_into_place_and_leaves_no_temporary(tmp_path):
  target = tmp_path / "sub" / "out.txt"
  with atomic_write_path(target) as temporary:
    assert temporary.parent == target.parent and temporary != target
    temporary.write_text("new")
    assert not target.exists()  # invisible until the block ends
  assert target.read_text() == "new"
  assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
  target = tmp_path / "out.txt"
  target.write_text("old")
  with pytest.raises(RuntimeError):
    with atomic_write_path(target) as temporary:
      temporary.write_text("half")
      raise RuntimeError("writer failed")
  assert target.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
