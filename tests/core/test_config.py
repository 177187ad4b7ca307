"""The config loader: variants, typed overrides, unknown keys, the resolved config."""

import json
import textwrap

import ml_collections
import pytest

from talkinghead_jax import cli, config
from talkinghead_jax.errors import ConfigError

CONFIG_FILE = textwrap.dedent("""
    import ml_collections

    def get_config(arg=None):
      c = ml_collections.ConfigDict()
      c.seed = 0
      c.lr = 1e-3
      c.name = "base"
      c.use_3d = True
      c.mesh_shape = (1, 1, 1)
      c.optional = None
      c.model = ml_collections.ConfigDict()
      c.model.ngf = 32
      c.model.k = 8
      if arg == "tiny":
        c.model.ngf = 8
      elif arg not in (None, ""):
        raise ValueError(f"unknown variant {arg!r}")
      return c
    """)


@pytest.fixture
def config_path(tmp_path):
  path = tmp_path / "stage.py"
  path.write_text(CONFIG_FILE)
  return path


def test_variant_selects(config_path):
  assert config.load(f"{config_path}:tiny").model.ngf == 8
  assert config.load(str(config_path)).model.ngf == 32


def test_typed_overrides(config_path):
  c = config.load(str(config_path), [
      "model.ngf=16", "lr=0.5", "name=other", "use_3d=false", "mesh_shape=(4, 2, 1)", "optional=[1, 2]",
  ])
  assert c.model.ngf == 16 and isinstance(c.model.ngf, int)
  assert c.lr == 0.5 and isinstance(c.lr, float)
  assert c.name == "other"
  assert c.use_3d is False
  assert c.mesh_shape == (4, 2, 1)
  assert c.optional == [1, 2]


@pytest.mark.parametrize("override, message", [
    ("model.ngff=16", "did you mean 'model.ngf'"),
    ("nope.ngf=16", "unknown config key"),
    ("model.ngf=sixteen", "bad value for 'model.ngf'"),
    ("use_3d=maybe", "bad value for 'use_3d'"),
    ("model=3", "group of settings"),
    ("model.ngf", "not of the form key=value"),
])
def test_bad_overrides(config_path, override, message):
  with pytest.raises(ConfigError, match=message):
    config.load(str(config_path), [override])


def test_bad_variant_and_bad_files(config_path, tmp_path):
  with pytest.raises(ConfigError, match="bad variant 'huge'"):
    config.load(f"{config_path}:huge")
  with pytest.raises(ConfigError, match="not found"):
    config.load(str(tmp_path / "none.py"))
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  with pytest.raises(ConfigError, match="broken.py: cannot import"):
    config.load(str(broken))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(ConfigError, match="defines no get_config"):
    config.load(str(empty))


def test_resolved_config_round_trip(config_path, tmp_path):
  c = config.load(f"{config_path}:tiny", ["model.k=4"])
  path = config.write(c, tmp_path / "run")
  assert json.loads(path.read_text())["model"]["k"] == 4
  back = config.load_resolved(tmp_path / "run")
  assert back.model.k == 4 and back.model.ngf == 8
  with pytest.raises(ConfigError, match="no resolved config"):
    config.load_resolved(tmp_path)


def test_config_command_prints_and_writes(config_path, tmp_path, capsys):
  status = cli.main(["config", f"{config_path}:tiny", "--set", "seed=3", "--workdir", str(tmp_path / "w")])
  assert status == 0
  printed = json.loads(capsys.readouterr().out)
  assert printed["seed"] == 3 and printed["model"]["ngf"] == 8
  assert (tmp_path / "w" / "config.json").is_file()


def test_repo_relative_path(monkeypatch, tmp_path, config_path):
  monkeypatch.setattr(config, "REPO_ROOT", tmp_path)
  monkeypatch.chdir("/")
  assert isinstance(config.load("stage.py:tiny"), ml_collections.ConfigDict)
