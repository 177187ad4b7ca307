"""The append-only rejects manifest: records, counts, no duplicates on reruns, crash damage."""

import collections
import json

import pytest

from talkinghead_jax.data import rejects


def test_records_and_counts(tmp_path):
  manifest = rejects.RejectsManifest(tmp_path / "sub" / "rejects.jsonl")
  assert manifest.records() == [] and manifest.counts() == collections.Counter()
  assert manifest.add("id1/vidA/00001", "train", "silent", "audio RMS 0")
  assert manifest.add("id1/vidA/00002", "train", "no_face", "no face in 30 frames")
  assert manifest.add("id1/vidA/00001", "test", "silent", "audio RMS 0")  # other split
  assert manifest.add("id2/vidB/00001", "test", "error", "ValueError: boom")  # unexpected
  assert manifest.records() == [
      {"clip": "id1/vidA/00001", "split": "train", "reason": "silent", "detail": "audio RMS 0"},
      {"clip": "id1/vidA/00002", "split": "train", "reason": "no_face",
       "detail": "no face in 30 frames"},
      {"clip": "id1/vidA/00001", "split": "test", "reason": "silent", "detail": "audio RMS 0"},
      {"clip": "id2/vidB/00001", "split": "test", "reason": "error", "detail": "ValueError: boom"},
  ]
  assert manifest.counts() == collections.Counter({"silent": 2, "no_face": 1, "error": 1})
  assert manifest.contains("id1/vidA/00002", "train")
  assert not manifest.contains("id1/vidA/00002", "test")
  lines = (tmp_path / "sub" / "rejects.jsonl").read_text().splitlines()
  assert [json.loads(line)["clip"] for line in lines] == ["id1/vidA/00001", "id1/vidA/00002",
                                                          "id1/vidA/00001", "id2/vidB/00001"]
  with pytest.raises(ValueError, match="unknown reject reason"):
    manifest.add("x", "train", "ugly")


def test_a_rerun_does_not_duplicate(tmp_path):
  path = tmp_path / "rejects.jsonl"
  rejects.RejectsManifest(path).add("c1", "train", "too_short", "3 frames")
  again = rejects.RejectsManifest(path)  # a second run
  assert not again.add("c1", "train", "too_short", "3 frames")
  assert len(path.read_text().splitlines()) == 1
  # Rejected differently this time: appended (the file is never rewritten), read as one.
  before = path.read_bytes()
  assert again.add("c1", "train", "no_face", "no face in 40 frames")
  assert path.read_bytes().startswith(before)
  assert again.records() == [{"clip": "c1", "split": "train", "reason": "no_face",
                              "detail": "no face in 40 frames"}]
  assert again.counts() == collections.Counter({"no_face": 1})


def test_a_line_cut_by_a_crash_is_skipped_and_not_extended(tmp_path):
  path = tmp_path / "rejects.jsonl"
  manifest = rejects.RejectsManifest(path)
  manifest.add("c1", "train", "silent")
  with open(path, "a") as stream:
    stream.write('{"clip": "c2", "split": "tra')  # no newline: the writer died here
  assert [r["clip"] for r in manifest.records()] == ["c1"]
  manifest.add("c3", "test", "no_audio", "the file has no audio stream")
  assert [r["clip"] for r in manifest.records()] == ["c1", "c3"]
  assert path.read_text().splitlines()[-1].startswith('{"clip": "c3"')
