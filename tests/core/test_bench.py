"""The bench harness: warm-up excluded, median of repeats, JSON report."""

import json

import pytest

from talkinghead_jax import bench


def test_measure_excludes_warmup_and_counts_repeats():
  calls = []
  result = bench.measure(lambda: calls.append(1), warmup=2, repeats=3)
  assert len(calls) == 5
  assert result["repeats"] == 3 and len(result["times_s"]) == 3
  assert result["min_s"] <= result["median_s"] <= result["max_s"]
  with pytest.raises(ValueError):
    bench.measure(lambda: None, repeats=0)


def test_report_writes_json_with_environment(tmp_path, capsys):
  timing = bench.measure(lambda: None, warmup=0, repeats=1)
  payload = bench.report("unit", {"step": timing, "note": "x"}, str(tmp_path / "r.json"))
  written = json.loads((tmp_path / "r.json").read_text())
  assert written["target"] == "unit" and written["results"]["note"] == "x"
  for key in ("date", "python", "cpu_count"):
    assert key in written["environment"]
  assert payload["results"]["step"]["repeats"] == 1
  assert "bench unit" in capsys.readouterr().out
