"""The README's quick start runs as written, and its first commands are the Makefile's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quick_start() -> str:
    section = README.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the quick start has no python block"
    return match.group(1)


def test_readme_leads_with_the_two_make_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_quick_start_runs(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "data" / "contacts.csv", tmp_path / "data" / "contacts.csv")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    try:
        exec(compile(_quick_start(), "README.md", "exec"), namespace)
    finally:
        box = namespace.get("box")
        if box is not None:
            box.stop()  # type: ignore[attr-defined]
    cleaned = namespace["cleaned"]
    outcomes = namespace["outcomes"]
    assert len(outcomes) == len(cleaned) == 5000  # type: ignore[arg-type]
    statuses = outcomes["status"].value_counts()  # type: ignore[index]
    assert statuses["sent"] == int(cleaned["sendable"].sum())  # type: ignore[index]
    assert statuses["skipped"] == 5000 - int(cleaned["sendable"].sum())  # type: ignore[index]
    assert (tmp_path / "smtpkit.db").exists()
