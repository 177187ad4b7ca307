"""The launch scripts pass their arguments through (gcloud, srun and scontrol replaced by fakes)."""

import os
import subprocess

from trainer_testdata import REPO


def _fake(bin_dir, name, body):
  path = bin_dir / name
  path.write_text("#!/bin/bash\n" + body + "\n")
  path.chmod(0o755)


def _run(script, *args, env=None):
  return subprocess.run(["bash", str(REPO / "launch" / script), *args], cwd=REPO, text=True, capture_output=True,
                        env={**os.environ, **(env or {})}, timeout=120)


def test_local_runs_the_train_command(tmp_path):
  result = _run("local.sh", "configs/expression.py:synthtalk_tiny", str(tmp_path / "run"),
                "--set", "data.source=arrays", "--set", f"data.path={tmp_path / 'none.npz'}")
  assert result.returncode == 1
  assert f"{tmp_path / 'none.npz'}: array file not found" in result.stderr


def test_tpu_pod_runs_the_same_command_on_every_worker(tmp_path):
  _fake(tmp_path, "gcloud", 'printf "%s\\n" "$@"')
  result = _run("tpu_pod.sh", "my-tpu", "us-central2-b", "configs/head_motion.py:vox", "/mnt/runs/phi",
                "--set", "batch_size=128", env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[:7] == ["compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone", "us-central2-b"]
  assert "--worker=all" in lines
  remote = lines[lines.index("--command") + 1]
  assert remote.startswith("cd ~/talkinghead-jax && talkinghead train --multihost --config configs/head_motion.py:vox")
  assert "--workdir /mnt/runs/phi --set batch_size=128" in remote


def test_slurm_requeues_a_run_stopped_by_the_time_limit(tmp_path):
  _fake(tmp_path, "srun", 'echo "srun $*" >> "$LOG"; exit "$SRUN_STATUS"')
  _fake(tmp_path, "scontrol", 'echo "scontrol $*" >> "$LOG"')
  log = tmp_path / "log"
  env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "LOG": str(log), "SLURM_JOB_ID": "42"}
  for status, requeued in (("75", True), ("0", False)):
    log.write_text("")
    result = _run("slurm_gpu.sbatch", "configs/head_motion.py:vox", "/shared/phi", "--set", "seed=3",
                  env={**env, "SRUN_STATUS": status})
    assert result.returncode == int(status)
    calls = log.read_text().splitlines()
    assert calls[0] == ("srun talkinghead train --config configs/head_motion.py:vox --workdir /shared/phi "
                        "--set seed=3")
    assert (calls[1:] == ["scontrol requeue 42"]) == requeued


def test_sequence_learner_results_script_runs_the_documented_chain(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "calls.txt"
  _fake(bin_dir, "talkinghead", f'echo "$*" >> {log}')
  out = tmp_path / "out"
  result = _run("sequence_learners_synthtalk.sh", str(out), env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
  assert result.returncode == 0, result.stderr
  calls = log.read_text().splitlines()
  assert [call.split()[0] for call in calls] == ["synth", "prepare", "train", "train", "train", "evaluate", "evaluate"]
  assert "--detector sidecar" in calls[1] and f"--data-dir {out}/prepared" in calls[1]
  assert "configs/head_motion.py:synthtalk_tiny_static" in calls[4]
  assert f"--baseline-checkpoint {out}/runs/head_motion_static" in calls[6]
  # A second run reuses the SynthTalk set once its manifest exists.
  (out / "synthtalk").mkdir(parents=True, exist_ok=True)
  (out / "synthtalk" / "synthtalk.json").write_text("{}")
  log.unlink()
  assert _run("sequence_learners_synthtalk.sh", str(out), env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}).returncode == 0
  assert log.read_text().split()[0] == "prepare"
