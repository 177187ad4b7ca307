"""launch/bundle_synthtalk.sh runs the documented chain with flags the CLI accepts, and refuses a
set above its size limit (`talkinghead` replaced by a fake that records its arguments)."""

import os
import pathlib
import shlex
import subprocess

from talkinghead_jax import cli

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "launch" / "bundle_synthtalk.sh"


def _run(tmp_path, export_bytes: int):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  log = tmp_path / "calls.txt"
  # The fake export writes a file of `export_bytes` bytes (sparse) into --out, like a set would.
  fake = bin_dir / "talkinghead"
  fake.write_text(f"""#!/bin/bash
printf '%q ' "$@" >> {log}; echo >> {log}
if [[ "$1" == export ]]; then mkdir -p "$3"; truncate -s {export_bytes} "$3/variables.npz"; fi
""")
  fake.chmod(0o755)
  out, set_dir = tmp_path / "out", tmp_path / "set"
  result = subprocess.run(["bash", str(SCRIPT), str(out), str(set_dir)], cwd=REPO, text=True, capture_output=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=60)
  calls = [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []
  return result, calls, out, set_dir


def test_bundle_script_synthesizes_prepares_trains_every_stage_and_exports(tmp_path):
  result, calls, out, set_dir = _run(tmp_path, 12_000_000)
  assert result.returncode == 0, result.stderr
  assert [call[0] for call in calls] == ["synth", "prepare", "train", "train", "train", "train", "export"]
  configs = [call[call.index("--config") + 1] for call in calls if call[0] == "train"]
  assert configs == [f"configs/{stage}.py:synthtalk_tiny" for stage in ("expression", "head_motion", "unprojection",
                                                                        "generator")]
  theta = calls[5]
  assert f"model.unprojection_checkpoint={out}/runs/unprojection" in theta
  export = calls[6]
  assert export[export.index("--out") + 1] == str(set_dir)
  assert export[export.index("--generator") + 1] == f"{out}/runs/generator"
  assert f"checkpoint set: {set_dir} (12000000 bytes)" in result.stdout
  # Every call is a command line the real CLI accepts.
  parser = cli.build_parser()
  for call in calls:
    args = parser.parse_args(call)
    assert args.command == call[0]


def test_bundle_script_refuses_a_set_over_30_mb(tmp_path):
  result, calls, _, set_dir = _run(tmp_path, 30_000_001)
  assert result.returncode == 1
  assert f"the checkpoint set {set_dir} holds 30000001 bytes, more than 30 MB" in result.stderr
