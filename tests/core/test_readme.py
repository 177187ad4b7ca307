"""The README's test command is exactly what CI runs."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _readme_test_command() -> str:
  readme = (ROOT / "README.md").read_text()
  match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.*?)\n```", readme, re.S)
  assert match, "README.md lacks the '<!-- test-command -->' block"
  return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
  ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
  assert _readme_test_command() in ci_lines
