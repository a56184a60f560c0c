"""The CI templates under examples/ci/ are valid for the services that run them: the GitHub
Actions workflow against GitHub's workflow schema and the GitLab file against GitLab's CI schema
(both as check-jsonschema from PyPI ships them), and each runs the commands slipway has."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {
    "github-actions.yml": "vendor.github-workflows",
    "github-platform-state.yml": "vendor.github-workflows",
    "gitlab-ci.yml": "vendor.gitlab-ci",
}
# The slipway commands each template runs.
COMMANDS = {
    "github-actions.yml": {"pipeline run", "gate", "promote request"},
    "github-platform-state.yml": {"diff", "apply"},
    "gitlab-ci.yml": {"pipeline run", "gate", "promote request"},
}

pytestmark = pytest.mark.backend_independent


def _check(schema: str, path: Path) -> subprocess.CompletedProcess:
    checker = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(checker), "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_ci_template_is_valid_for_its_service(name, tmp_path):
    path = ROOT / "examples" / "ci" / name
    result = _check(TEMPLATES[name], path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check bites: a job with a misspelt key is refused.
    broken = tmp_path / name
    text = path.read_text()
    broken.write_text(text.replace("runs-on:", "run-on:") if "github" in name
                      else text.replace("  stage: gate", "  stag: gate"))
    assert broken.read_text() != text
    result = _check(TEMPLATES[name], broken)
    assert result.returncode != 0, result.stdout


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_ci_template_runs_commands_slipway_has(name, slipway_bin):
    # Shell continuation lines joined, so each command is one line with all its flags.
    text = re.sub(r"\\\n\s*", " ", (ROOT / "examples" / "ci" / name).read_text())
    used: dict[str, set[str]] = {}
    for command, rest in re.findall(
            r"\bslipway (pipeline run|gate|promote request|diff|apply)\b([^\n]*)", text):
        used.setdefault(command, set()).update(re.findall(r"(--[a-z][a-z-]*)", rest))
    assert set(used) == COMMANDS[name], used
    for command, flags in used.items():
        help_text = subprocess.run([slipway_bin, *command.split(), "--help"],
                                   capture_output=True, text=True, timeout=30).stdout
        missing = {f for f in flags if f not in help_text}
        assert not missing, f"{name}: `slipway {command}` has no {missing}"
