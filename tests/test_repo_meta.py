"""Repository-level promises: the README's commands are what CI runs."""

import re
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


def test_readme_snakemake_commands_do_not_read_a_target_as_a_config_file():
    """``--configfile`` takes every following word up to the next option: a target written
    after it would be read as one more config file. Each README command puts its targets
    before ``--configfile`` (or after ``--``)."""
    text = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```bash")[1:]]
    commands = [ln for b in blocks for ln in b.splitlines()]
    commands += re.findall(r"`([^`\n]*snakemake[^`\n]*)`", text)  # inline code in the prose
    checked = 0
    for line in commands:
        words = line.split("#", 1)[0].split()
        if not any(w.endswith("snakemake") for w in words) or "--configfile" not in words:
            continue
        checked += 1
        for w in words[words.index("--configfile") + 1:]:
            if w.startswith("-"):
                break
            assert w.endswith((".yaml", ".yml")), f"README: {w!r} is read as a config file in: {line.strip()}"
    assert checked >= 3
