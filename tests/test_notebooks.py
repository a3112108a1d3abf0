"""Execute each notebook top to bottom on a fresh kernel and check what an analyst would see.

Each notebook runs once (nbclient, kernel ``python3``, working directory ``notebooks/``). After
its last cell, one extra *probe* cell (not part of the notebook) asks the kernel for the facts
to check the visible outputs against: the sandbox's own record of what it received and, for the
secret-leak rule, the sandbox's generated password, which must appear in no output at all.
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

import smtpkit
from smtpkit import demo

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("01_clean_list.ipynb", "02_send_campaign.ipynb", "03_delivery_report.ipynb")
CELL_TIMEOUT = 180  # seconds per cell; each notebook takes well under a minute here
WIDGET = "application/vnd.jupyter.widget-view+json"

# What the probe prints as JSON after the notebook has run (evaluated in its kernel).
PROBES: dict[str, str] = {
    "01_clean_list.ipynb": """{
        "rows": len(final), "ready": int(final["sendable"].sum()),
        "corrected": int(chosen.sum()), "already_listed": int(already_listed.sum()),
    }""",
    "02_send_campaign.ipynb": """{
        "password": box.password.reveal(), "username": box.username,
        "to_send": int(campaign_list["sendable"].sum()),
        "accepted": len(box.deliveries()),
        "recipients": int(box.deliveries()["recipient"].str.lower().nunique()),
        "max_copies": int(box.deliveries()["delivery_count"].max()),
        "statuses": {k: int(v) for k, v in outcomes["status"].value_counts().items()},
        "copies_by_status": {
            str(status): sorted(set(map(int, group)))
            for status, group in outcomes["message_id"]
            .map(box.deliveries().groupby("message_id").size())
            .fillna(0).groupby(outcomes["status"])
        },
    }""",
    "03_delivery_report.ipynb": """{
        "password": box.password.reveal(), "username": box.username,
        "recipients": len(outcomes), "attempts": len(attempts), "reports": len(bounces),
        "must_suppress": int(bounces.loc[
            ((bounces["kind"] == "bounce") & bounces["hard"].fillna(False).astype(bool))
            | (bounces["kind"] == "complaint"), "recipient"].str.lower().nunique()),
        "late_written": box.mail_written,
    }""",
}


@dataclass
class Executed:
    name: str
    cells: list[Any]  # the notebook's code cells, with their outputs
    facts: dict[str, Any]
    seconds: float

    def texts(self) -> list[str]:
        """Every output of every cell as text (streams, and each MIME type's data)."""
        found: list[str] = []
        for cell in self.cells:
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    found.append(output.text)
                elif output.output_type == "error":
                    found.append("\n".join(output.traceback))
                for value in output.get("data", {}).values():
                    found.append(value if isinstance(value, str) else json.dumps(value))
        return found

    def visible(self) -> str:
        """What the reader sees as text: streams and plain-text results."""
        parts = []
        for cell in self.cells:
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    parts.append(output.text)
                elif "text/plain" in output.get("data", {}):
                    parts.append(output.data["text/plain"])
        return "\n".join(parts)

    def outputs_of(self, source_start: str) -> list[Any]:
        matches = [c for c in self.cells if c.source.lstrip().startswith(source_start)]
        assert len(matches) == 1, f"expected one cell starting with {source_start!r}"
        return list(matches[0].get("outputs", []))

    def images(self) -> list[bytes]:
        import base64

        return [
            base64.b64decode(output.data["image/png"])
            for cell in self.cells
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})
        ]


@functools.cache
def execute(name: str) -> Executed:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    started = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - started
        probe = nbformat.v4.new_code_cell(
            f"import json as _json\nprint(_json.dumps({PROBES[name]}))"
        )
        # then remove the notebook's temporary campaign folder (kept for a reader, not a test)
        cleanup = nbformat.v4.new_code_cell(
            "if 'workdir' in globals():\n"
            "    import shutil as _shutil\n"
            "    box.stop()\n"
            "    _shutil.rmtree(workdir, ignore_errors=True)"
        )
        for extra in (probe, cleanup):
            notebook.cells.append(extra)
            client.execute_cell(extra, len(notebook.cells) - 1)
            notebook.cells.pop()
    (stream,) = [o for o in probe.outputs if o.output_type == "stream"]
    facts = json.loads(stream.text)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    return Executed(name, code, facts, seconds)


def number(text: str) -> int:
    return int(text.replace(",", ""))


# --- every notebook ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_stripped(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, "no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    prose = [c.source for c in notebook.cells if c.cell_type == "markdown"]
    assert len(prose) >= 5
    assert any(p.startswith("## What we conclude") for p in prose)


@pytest.mark.parametrize("name", NAMES)
def test_runs_top_to_bottom_without_errors(name: str) -> None:
    executed = execute(name)
    for cell in executed.cells:
        assert cell.execution_count is not None, cell.source[:60]
        for output in cell.get("outputs", []):
            assert output.output_type != "error", "\n".join(output.traceback)
            if output.output_type == "stream" and output.name == "stderr":
                assert "Traceback" not in output.text and "Warning" not in output.text, \
                    output.text[:2000]
    print(f"{name}: {executed.seconds:.1f} s")


@pytest.mark.parametrize("name", NAMES)
def test_shows_figures(name: str) -> None:
    images = execute(name).images()
    assert images, "no image/png output"
    for data in images:
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.parametrize("name", [n for n in NAMES if "password" in PROBES[n]])
def test_no_output_shows_the_sandbox_password(name: str) -> None:
    executed = execute(name)
    password = executed.facts["password"]
    assert len(password) >= 16  # the probe really found it
    for text in executed.texts():
        assert password not in text


# --- 01: clean ------------------------------------------------------------------------------


def test_01_shows_the_counts_of_the_list() -> None:
    executed = execute("01_clean_list.ipynb")
    facts, visible = executed.facts, executed.visible()
    contacts = pd.read_csv(ROOT / "data" / "contacts.csv", dtype=str, keep_default_na=False)
    assert facts["rows"] == len(contacts) == 5000
    assert f"{len(contacts):,} contacts; address column: 'email'" in visible

    # the typo fixes, counted straight from the file: addresses at the five misspelt domains
    domains = contacts["email"].str.extract(r"@([^@\s<>\"']+?)[\s>\"']*$")[0].str.lower()
    typos = int(domains.isin(["gmial.com", "gmail.con", "hotmial.com", "outlok.com",
                              "yaho.com"]).sum())
    assert facts["corrected"] == typos > 0
    assert f"corrected addresses: {typos}" in visible
    assert f"already on the list: {facts['already_listed']}" in visible

    # the notebook's decisions give the same list as the demo's (written independently)
    expected = int(demo.decide(smtpkit.load_contacts(ROOT / "data" / "contacts.csv"))
                   ["sendable"].sum())
    assert facts["ready"] == expected
    assert f"ready to send: {expected:,} of 5,000 contacts" in visible
    html = [o for o in executed.outputs_of("cleaned = smtpkit.clean(contacts)")
            if "text/html" in o.get("data", {})]
    assert html and "Clean report" in html[0].data["text/html"]


# --- 02: send, interrupt, resume ----------------------------------------------------------


def test_02_verifies_with_the_password_redacted() -> None:
    executed = execute("02_send_campaign.ipynb")
    (config,) = executed.outputs_of("workdir = Path(tempfile.mkdtemp(")
    assert "password='********'" in config.data["text/plain"]
    assert f"username='{executed.facts['username']}'" in config.data["text/plain"]
    (report,) = executed.outputs_of("check_report = smtpkit.verify(config)")
    assert "ready to send" in report.data["text/html"]


def test_02_checks_and_dry_runs_every_row() -> None:
    executed = execute("02_send_campaign.ipynb")
    facts, visible = executed.facts, executed.visible()
    assert "rows that cannot be rendered: 0" in visible
    (damaged,) = executed.outputs_of("damaged = to_send.head(3).copy()")
    assert "unsafe_header" in damaged.data["text/plain"]
    assert "missing_field" in damaged.data["text/plain"]
    assert re.search(rf"messages rendered: {facts['to_send']:,}, [\d,]+ bytes on average; "
                     r"sent: 0\b", visible)


def test_02_stops_part_way_then_resumes_without_sending_twice() -> None:
    executed = execute("02_send_campaign.ipynb")
    facts, visible = executed.facts, executed.visible()
    stopped = re.search(r"stopped: the sandbox has accepted ([\d,]+) messages so far", visible)
    assert stopped, "the send was not interrupted part way"
    assert 1000 <= number(stopped.group(1)) < facts["to_send"]
    partial = re.search(r"([\d,]+) of 5,000 rows have an outcome in the journal", visible)
    assert partial and number(partial.group(1)) < 5000

    statuses = facts["statuses"]
    assert sum(statuses.values()) == 5000
    assert facts["max_copies"] == 1 and facts["recipients"] == facts["accepted"]
    copies = facts["copies_by_status"]
    assert copies["sent"] == [1]  # every sent row: exactly one message at the server
    for status in ("failed", "skipped", "deferred"):
        assert copies.get(status, [0]) == [0], status
    assert set(copies.get("unknown", [])) <= {0, 1}
    assert statuses["sent"] + statuses.get("unknown", 0) >= facts["accepted"] >= statuses["sent"]
    assert (f"the sandbox accepted {facts['accepted']:,} messages for "
            f"{facts['accepted']:,} recipients; most copies of one message to one recipient: 1"
            ) in visible
    assert "new messages: 0; same outcomes as before: True" in visible


def test_02_shows_a_progress_bar_in_each_send() -> None:
    executed = execute("02_send_campaign.ipynb")
    for start in ("task = asyncio.ensure_future(", "outcomes = smtpkit.send("):
        outputs = executed.outputs_of(start)
        bars = [o for o in outputs if WIDGET in o.get("data", {})]
        assert bars, f"no progress widget in the cell {start!r}"
        assert "campaign spring-newsletter" in bars[0].data["text/plain"]


# --- 03: bounces and the report ------------------------------------------------------------


def test_03_reads_and_applies_every_bounce() -> None:
    executed = execute("03_delivery_report.ipynb")
    facts, visible = executed.facts, executed.visible()
    assert facts["recipients"] == 5000
    assert f"{facts['recipients']:,} recipients, {facts['attempts']:,} SMTP attempts" in visible
    assert facts["reports"] == facts["late_written"] > 0  # every report the sandbox wrote
    assert f"{facts['reports']} reports in Maildir/" in visible
    assert "reports matching no recipient: 0" in visible
    assert facts["must_suppress"] > 0
    assert f"addresses to suppress: {facts['must_suppress']}" in visible


def test_03_shows_the_dashboard_and_latency() -> None:
    executed = execute("03_delivery_report.ipynb")
    (dashboard,) = [o for o in executed.outputs_of("smtpkit.dashboard(final, applied")
                    if "image/png" in o.get("data", {})]
    assert "7 Axes" in dashboard.data["text/plain"]  # every panel, the timeline included
    assert len(executed.images()) >= 2
    (table,) = [o for o in executed.outputs_of('smtpkit.latency(applied, by="domain"')
                if "text/plain" in o.get("data", {})]
    assert "gmail.com" in table.data["text/plain"] and "p95_ms" in table.data["text/plain"]
    assert re.search(r"wrote \S+report\.html \(\d+\.\d MB\)", executed.visible())
