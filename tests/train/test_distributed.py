"""Two processes on localhost (jax.distributed over CPU devices) train, checkpoint and resume
like one process with the same devices does."""

import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from trainer_testdata import EXPRESSION_RUN_LR, EXPRESSION_RUN_MESH, EXPRESSION_TEST_OVERRIDES, REPO

from talkinghead_jax.train import loop


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


def _launch(workdir, process_id, overrides, *, flags=True, port):
  """One of two processes, each with 4 CPU devices: 8 in all, as the in-process reference."""
  env = {**os.environ, "PYTHONUNBUFFERED": "1",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  command = [sys.executable, "-m", "talkinghead_jax", "train", "--workdir", str(workdir)]
  if flags:  # the first run: explicit flags and a config file
    command += ["--config", "configs/expression.py:synthtalk_tiny", "--coordinator-address", f"localhost:{port}",
                "--num-processes", "2", "--process-id", str(process_id)]
  else:  # the resumed run: the environment and the workdir's config.json
    env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(process_id))
  for override in overrides:
    command += ["--set", override]
  return subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _run_pair(workdir, overrides, *, flags):
  port = _free_port()
  processes = [_launch(workdir, i, overrides, flags=flags, port=port) for i in range(2)]
  try:
    outputs = [process.communicate(timeout=300)[0] for process in processes]
  finally:
    for process in processes:  # a hung or failed peer must not outlive the test
      if process.poll() is None:
        process.kill()
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output
  return outputs[0]  # the primary host prints the progress lines


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path, expression_file, expression_runs):
  """2 hosts × 4 devices, mesh data=4 × fsdp=2: 4 steps, then a fresh pair resumes to 7; the same
  losses as the one-process run on 8 devices (conftest.expression_runs "whole")."""
  common = [*EXPRESSION_TEST_OVERRIDES, f"data.path={expression_file}", EXPRESSION_RUN_LR, *EXPRESSION_RUN_MESH]
  first = _run_pair(tmp_path / "two", [*common, "total_steps=4"], flags=True)
  assert loop.load_checkpoint(tmp_path / "two")["step"] == 4
  second = _run_pair(tmp_path / "two", ["total_steps=7"], flags=False)
  assert "resuming from step 4" in second
  losses = [float(v) for v in re.findall(r"model/loss (\S+)", first + second)]
  _, one_process, _, _ = expression_runs
  expected = [entry["model/loss"] for entry in one_process.history[:7]]
  np.testing.assert_allclose(losses, expected, rtol=2e-4)  # printed with 4 digits
  checkpoint = loop.load_checkpoint(tmp_path / "two")
  # 5 batches per epoch: after 7 steps the input is at epoch 1, batch 2; every host wrote its shards.
  assert checkpoint["step"] == 7 and checkpoint["data"] == {"epoch": 1, "position": 2}
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(checkpoint["params"]))
