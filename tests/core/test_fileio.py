"""Atomic writes: all or nothing; the .npz names of variable trees; file digests."""

import hashlib

import numpy as np
import pytest

from talkinghead_jax import fileio
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



def test_variable_trees_flatten_to_slash_names_and_back():
  kernel, bias, mean = np.ones((2, 3)), np.zeros(3), np.arange(3)
  tree = {"params": {"conv": {"kernel": kernel, "bias": bias}}, "batch_stats": {"mean": mean}}
  flat = fileio.flatten_tree(tree)
  assert flat.keys() == {"params/conv/kernel", "params/conv/bias", "batch_stats/mean"}
  assert flat["params/conv/kernel"] is kernel and flat["batch_stats/mean"] is mean
  rebuilt = fileio.unflatten_tree(flat)
  assert rebuilt.keys() == {"params", "batch_stats"} and rebuilt["params"].keys() == {"conv"}
  assert rebuilt["params"]["conv"]["bias"] is bias and rebuilt["batch_stats"]["mean"] is mean
  assert fileio.flatten_tree(rebuilt) == flat


def test_file_digest_equals_hashlib_on_the_whole_bytes(tmp_path):
  data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # several read blocks and a remainder
  path = tmp_path / "blob.bin"
  path.write_bytes(data)
  assert fileio.file_digest(path, "sha256") == hashlib.sha256(data).hexdigest()
  assert fileio.file_digest(str(path), "sha1") == hashlib.sha1(data).hexdigest()
