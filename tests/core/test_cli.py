"""The CLI: registration, help for every command, one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from talkinghead_jax import cli


def test_every_command_has_help(capsys):
  for name in cli.commands():
    with pytest.raises(SystemExit) as exit_info:
      cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: talkinghead " + name in capsys.readouterr().out


def test_unknown_command_is_one_line_exit_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["no-such-command"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "invalid choice" in err


def test_bad_flag_is_one_line_exit_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["config", "configs/x.py", "--no-such-flag"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "--no-such-flag" in err


def test_user_error_is_one_line_exit_1(capsys, tmp_path):
  status = cli.main(["config", str(tmp_path / "missing.py")])
  assert status == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "missing.py" in err and "not found" in err


def test_register_twice_is_refused():
  def configure(parser):
    return lambda args: 0

  cli.register("dup-test", "x")(configure)
  with pytest.raises(ValueError):
    cli.register("dup-test", "y")(lambda parser: None)
  cli._COMMANDS.pop("dup-test")


def test_python_dash_m_entry_point():
  result = subprocess.run([sys.executable, "-m", "talkinghead_jax", "--help"],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0
  assert "config" in result.stdout
