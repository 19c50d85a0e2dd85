"""The README's commands must stay true to the code: every `svdq-edge` line parses against the real CLI, every
`python -m` module exists, and the two set-up commands are Makefile targets."""

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest

from svdq_edge.cli.app import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands(prefix: str) -> list[str]:
    lines = [ln.strip() for ln in README.splitlines() if ln.strip().startswith(prefix)]
    return [ln.split("  #")[0].strip() for ln in lines]


@pytest.mark.parametrize("line", readme_commands("svdq-edge "))
def test_svdq_edge_command_parses(line, tmp_path, monkeypatch):
    """Every option of the line is checked: a path the tour makes in an earlier step is created here (empty) and
    the line parsed again, so a bad choice or type after it is still caught."""
    sub, *rest = shlex.split(line)[1:]
    cmd = main.get_command(click.Context(main), sub)
    assert cmd is not None, f"README uses an unknown command: {sub}"
    cwd = tmp_path / "a" / "b"  # room for ../ paths
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    for _ in range(len(rest) + 1):
        try:
            cmd.make_context(sub, list(rest))
            return
        except click.BadParameter as e:
            found = re.search(r"(File|Directory|Path) '([^']+)' does not exist", str(e))
            assert found, f"{line}: {e}"
            kind, path = found.groups()
            target = cwd / path
            if kind == "File" or (kind == "Path" and target.suffix):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            else:
                target.mkdir(parents=True)
        except click.UsageError as e:
            pytest.fail(f"README command does not parse: {line}: {e}")
    pytest.fail(f"{line}: paths kept missing")


@pytest.mark.parametrize("line", readme_commands("python -m "))
def test_python_modules_exist(line):
    module = shlex.split(line)[2]
    assert importlib.util.find_spec(module) is not None, module


def test_setup_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^\s+make (\w+)", README, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target} is not a Makefile target"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_mentions_every_saliency_method():
    from svdq_edge.saliency import available

    for name in available():
        assert f"`{name}`" in README, f"README does not document method {name}"
