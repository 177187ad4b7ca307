"""The rejects manifest: which clips a preparation run skipped, and why (JSON lines).

One object per line, {"clip": ..., "split": ..., "reason": ..., "detail": ...}, with `reason`
one of `REASONS`: `preprocess.REJECT_REASONS`, or "error" for an unexpected failure on that
clip (the detail then names the exception), so one bad file never stops a run. The file is
only ever appended to, one whole line per write, so a crashed run loses at most the line it
was writing and a rerun simply goes on appending. Records are keyed by (split, clip): a rerun
that rejects a clip again with the same reason and detail writes nothing; one that rejects it
differently appends a line, and reading keeps the latest line per key.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pathlib

from talkinghead_jax.data.preprocess import REJECT_REASONS

REASONS = (*REJECT_REASONS, "error")
_FIELDS = ("clip", "split", "reason", "detail")


class RejectsManifest:
  """A rejects manifest at `path` (created on the first `add`)."""

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)

  def _read(self) -> dict[tuple[str, str], dict[str, str]]:
    """Latest record per (split, clip), in order of each key's first appearance."""
    records: dict[tuple[str, str], dict[str, str]] = {}
    if not self.path.exists():
      return records
    with open(self.path, encoding="utf-8") as stream:
      for number, line in enumerate(stream, 1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
          record = {field: str(record[field]) for field in _FIELDS}
        except (json.JSONDecodeError, KeyError, TypeError):
          # A line cut short by a crash: the clip is simply tried (and recorded) again.
          logging.warning("%s:%d: skipping an unreadable rejects record", self.path, number)
          continue
        records[(record["split"], record["clip"])] = record
    return records

  def add(self, clip: str, split: str, reason: str, detail: str = "") -> bool:
    """Records a rejected clip; returns False when the same record is already there."""
    if reason not in REASONS:
      raise ValueError(f"unknown reject reason {reason!r}; one of {REASONS}")
    record = {"clip": str(clip), "split": str(split), "reason": reason, "detail": str(detail)}
    if self._read().get((record["split"], record["clip"])) == record:
      return False
    line = json.dumps(record, ensure_ascii=False) + "\n"
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with open(self.path, "a+b") as stream:
      # After a crash mid-line, start on a fresh line rather than extend the broken one.
      if stream.seek(0, os.SEEK_END) > 0:
        stream.seek(-1, os.SEEK_END)
        if stream.read(1) != b"\n":
          line = "\n" + line
      stream.write(line.encode("utf-8"))
    return True

  def records(self) -> list[dict[str, str]]:
    """One dict per rejected clip (the latest record of each (split, clip))."""
    return list(self._read().values())

  def contains(self, clip: str, split: str) -> bool:
    """Whether (split, clip) is recorded as rejected."""
    return (str(split), str(clip)) in self._read()

  def counts(self) -> collections.Counter:
    """Number of rejected clips per reason."""
    return collections.Counter(record["reason"] for record in self._read().values())
