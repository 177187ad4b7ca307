"""`talkinghead bench generate`: every stage of `generate` timed, without TensorFlow; the configs
each --size picks; the per-stage medians."""

import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

from talkinghead_jax.bench import generate as bench_generate
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.infer import pipeline

REPO = pathlib.Path(__file__).resolve().parents[2]
FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")
# TensorFlow made unimportable, as on the GPU machines; the bench then runs through the CLI.
NO_TENSORFLOW_MAIN = ("import sys; sys.modules['tensorflow'] = None; from talkinghead_jax import cli; "
                      "status = cli.main(sys.argv[1:]); "
                      "assert sys.modules.get('tensorflow') is None, 'TensorFlow was imported'; sys.exit(status)")


def test_bench_generate_times_every_stage_without_tensorflow(tmp_path):
  report_path = tmp_path / "bench.json"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_COMPILE_FLAGS, "PYTHONPATH": str(REPO)}
  result = subprocess.run(
      [sys.executable, "-c", NO_TENSORFLOW_MAIN, "bench", "generate", "--size", "32", "--frames", "6",
       "--batch-size", "4", "--repeats", "1", "--warmup", "1", "--json", str(report_path)],
      cwd=REPO, env=env, text=True, capture_output=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(report_path.read_text())["results"]
  assert results["frames per video"] == 6 and results["image size (Θ)"] == 32
  assert results["video (whole generate)"]["repeats"] == 1
  seconds = results["stage seconds (median)"]
  assert set(seconds) == set(pipeline.STAGES)
  assert all(value > 0 for value in seconds.values()), seconds
  # The stages are parts of one generate call: together no more than its wall time.
  assert sum(seconds.values()) <= results["video (whole generate)"]["median_s"] * 1.01
  assert results["Θ + render, frames/s"] == pytest.approx(6 / (seconds["render"] + seconds["generator"]), rel=1e-2)
  for stage in pipeline.STAGES:
    assert f"stage: {bench_generate.STAGE_LABELS[stage]}" in result.stdout


def test_sizes_pick_the_tiny_or_the_full_configs():
  assert bench_generate.variants_for(64, None) == (bench_generate.TINY_VARIANTS, {})
  assert bench_generate.variants_for(256, None) == (bench_generate.FULL_VARIANTS, {})
  variants, overrides = bench_generate.variants_for(32, None)
  assert variants == bench_generate.TINY_VARIANTS
  assert overrides == {"generator": ["data.image_size=32"], "unprojection": ["data.image_size=32"]}
  variants, overrides = bench_generate.variants_for(128, ["generator=configs/generator.py:vox_k8,bf16"])
  assert variants["generator"] == "configs/generator.py:vox_k8,bf16" and variants["expression"] == "vox"
  assert overrides == {"unprojection": ["data.image_size=128"]}
  with pytest.raises(ConfigError, match="multiple of 16"):
    bench_generate.variants_for(40, None)
  with pytest.raises(ConfigError, match="stage=config"):
    bench_generate.variants_for(64, ["theta=vox_k8"])


def test_summary_takes_the_median_of_each_stage():
  def report(**seconds):
    return types.SimpleNamespace(stage_seconds={stage: seconds.get(stage, 0.0) for stage in pipeline.STAGES})

  reports = [report(render=1.0, generator=3.0, encode=0.5), report(render=2.0, generator=1.0, encode=0.1),
             report(render=4.0, generator=2.0, encode=0.2)]
  summary = bench_generate.summarize(reports, frames=10)
  assert summary["stage seconds (median)"]["render"] == 2.0
  assert summary["stage seconds (median)"]["generator"] == 2.0
  assert summary["stage seconds (median)"]["encode"] == 0.2
  assert summary["Θ + render, frames/s"] == pytest.approx(10 / 4.0)  # median of 4, 3, 6
  assert summary["stage: render (3D-aware image)"] == "200.000 ms/frame, 5.00 frames/s (2.000 s)"
  assert summary["stage: Ψ (expression)"].endswith("- (0.000 s)")
