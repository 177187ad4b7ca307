"""`talkinghead train` in subprocesses: SIGTERM saves and exits cleanly; resuming ends where an
uninterrupted run ends; Φ learns and logs. (Φ on mesh data=4 × fsdp=2, both optimizers.)"""

import os
import re
import signal
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest

from trainer_testdata import HEAD_MOTION_TEST_OVERRIDES, REPO
from talkinghead_jax.train import command, loop

TOTAL = 40


def _command(workdir, *overrides, config="configs/head_motion.py:synthtalk_tiny"):
  command = [sys.executable, "-m", "talkinghead_jax", "train", "--workdir", str(workdir)]
  if config:
    command += ["--config", config]
  for override in overrides:
    command += ["--set", override]
  return command


def _env():
  return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def head_motion_runs(tmp_path_factory, head_motion_file):
  root = tmp_path_factory.mktemp("head_motion_runs")
  overrides = [*HEAD_MOTION_TEST_OVERRIDES, f"data.path={head_motion_file}", f"total_steps={TOTAL}",
               "mesh.data=4", "mesh.fsdp=2", "sharding.fsdp_min_size=0", f"log.images_every_steps={TOTAL}"]
  # Interrupted: SIGTERM once step 3 is reported.
  process = subprocess.Popen(_command(root / "interrupted", *overrides), cwd=REPO, env=_env(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  seen = []
  try:
    for line in process.stdout:
      seen.append(line)
      if line.startswith("step 3/"):
        process.send_signal(signal.SIGTERM)
        break
    rest, _ = process.communicate(timeout=300)
  finally:
    if process.poll() is None:
      process.kill()
  interrupted = (process.returncode, "".join(seen) + rest)
  # Resumed: the same workdir, config from its config.json.
  resumed = subprocess.run(_command(root / "interrupted", config=None), cwd=REPO, env=_env(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
  whole = subprocess.run(_command(root / "whole", *overrides), cwd=REPO, env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
  return root, interrupted, (resumed.returncode, resumed.stdout), (whole.returncode, whole.stdout)


def test_sigterm_saves_a_checkpoint_and_exits_with_the_stopped_status(head_motion_runs):
  root, (status, output), _, _ = head_motion_runs
  assert status == command.EXIT_STOPPED, output
  assert "Traceback" not in output
  saved = re.search(r"stopping on signal: saved checkpoint at step (\d+)", output)
  assert saved, output
  step = int(saved.group(1))
  assert 3 <= step < TOTAL
  assert loop.load_checkpoint(root / "interrupted", step=step)["step"] == step


def test_resumed_run_ends_with_the_same_state_as_an_uninterrupted_run(head_motion_runs):
  root, (_, interrupted), (status, output), (whole_status, whole_output) = head_motion_runs
  assert status == 0 and whole_status == 0, output + whole_output
  stopped_at = int(re.search(r"saved checkpoint at step (\d+)", interrupted).group(1))
  assert f"resuming from step {stopped_at}" in output
  resumed, reference = loop.load_checkpoint(root / "interrupted"), loop.load_checkpoint(root / "whole")
  assert resumed["step"] == reference["step"] == TOTAL and resumed["data"] == reference["data"]
  for part in ("params", "opt_state", "collections"):
    for a, b in zip(jax.tree.leaves(resumed[part]), jax.tree.leaves(reference[part])):
      np.testing.assert_array_equal(a, b, err_msg=part)  # bit for bit


def test_head_motion_learns_and_logs(head_motion_runs):
  root, _, _, (status, output) = head_motion_runs
  assert status == 0, output
  mse = [float(value) for value in re.findall(r"model/mse (\S+)", output)]
  assert len(mse) == TOTAL
  # 5 batches per epoch: the last epoch against the first.
  assert np.mean(mse[-5:]) < 0.8 * np.mean(mse[:5])
  assert re.search(r"step 40/40 .*discriminator/loss \S+.*model/g_gan \S+.*steps/s  ETA", output)
  events = list((root / "whole" / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1
  tags = _event_tags(events[0])
  assert ("model/mse", "simple_value") in tags and ("discriminator/loss", "simple_value") in tags
  assert ("future_pose", "image") in tags


def _event_tags(path) -> set[tuple[str, str]]:
  """(tag, kind) of every summary value in a TensorBoard event file (TFRecord framing)."""
  from tensorboardX.proto import event_pb2  # noqa: PLC0415

  data, offset, tags = path.read_bytes(), 0, set()
  while offset < len(data):
    length = struct.unpack("<Q", data[offset:offset + 8])[0]
    event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
    offset += 12 + length + 4  # length, its crc, the record, its crc
    tags.update((value.tag, value.WhichOneof("value")) for value in event.summary.value)
  return tags
