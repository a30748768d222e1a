"""Repository-level promises: the README's commands are what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_readme_starts_with_two_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert cmds[0].startswith("bash scripts/setup.sh && ") and "snakemake --cores 1" in cmds[0]
    assert cmds[1].startswith("bash scripts/setup.sh && ") and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1].split("&&", 1)[1].strip()
    ci = (ROOT / ".ci/run").read_text()
    assert "bash scripts/setup.sh" in ci
    assert any(line.strip() == test_cmd for line in ci.splitlines()), test_cmd
