"""``smtpkit demo`` end to end: the console script against the real sandbox, and what it writes.

The module's main test runs the installed console script in a subprocess (as ``make demo`` does)
and checks its files against each other and against the sandbox's own record of what it
received. Smaller in-process runs check the pieces that the full run cannot show.
"""

from __future__ import annotations

import base64
import html.parser
import os
import re
import secrets
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import smtpkit
from smtpkit import demo
from smtpkit._sample import make_contacts
from smtpkit.errors import InputError, MissingColumnError

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEMO_TIMEOUT = 240  # seconds; the demo takes well under a minute here


@dataclass
class DemoRun:
    out: Path
    returncode: int
    stdout: str
    stderr: str


def console_script() -> Path:
    script = Path(sys.executable).parent / ("smtpkit.exe" if os.name == "nt" else "smtpkit")
    if not script.is_file():
        pytest.fail(f"the smtpkit console script is not installed beside {sys.executable}; run "
                    "`make test` (pip install -e '.[dev,notebook]') first", pytrace=False)
    return script


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("demo")
    out = workdir / "report folder"
    completed = subprocess.run(
        [str(console_script()), "demo", "--out", str(out)],
        cwd=workdir,  # the demo must find its contact list without help from the cwd
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return DemoRun(out, completed.returncode, completed.stdout, completed.stderr)


def summary_rows(stdout: str) -> dict[str, dict[str, int]]:
    """The printed summary table as {segment: {column: count}}."""
    lines = stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines)
                     if line.split() == list(demo.SUMMARY_COLUMNS))
    rows: dict[str, dict[str, int]] = {}
    for line in lines[header_at + 2:]:
        parts = line.split()
        if len(parts) != len(demo.SUMMARY_COLUMNS) + 1:
            break
        rows[parts[0]] = dict(zip(demo.SUMMARY_COLUMNS, map(int, parts[1:]), strict=True))
    return rows


class PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.images: list[str] = []
        self.attribute_values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        self.attribute_values += [v for _, v in attrs if v]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


# --- the console script, end to end --------------------------------------------------------


@pytest.mark.slow
def test_demo_exits_cleanly_and_says_where_the_files_are(demo_run: DemoRun) -> None:
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    for name in ("report.html", "dashboard.png", "journal.db"):
        path = (demo_run.out / name).resolve()
        assert path.is_file(), f"{name} missing"
        assert str(path) in demo_run.stdout, f"the demo does not say where {name} is"
    assert "error" not in demo_run.stderr.lower()
    assert "Traceback" not in demo_run.stderr


@pytest.mark.slow
def test_demo_shows_a_progress_bar_that_reaches_the_end(demo_run: DemoRun) -> None:
    rows = summary_rows(demo_run.stdout)
    attempted = rows["all"]["recipients"] - rows["all"]["skipped"]
    assert f"campaign {demo.CAMPAIGN}" in demo_run.stderr
    assert f"{attempted}/{attempted}" in demo_run.stderr


@pytest.mark.slow
def test_report_is_one_self_contained_page_with_inline_images(demo_run: DemoRun) -> None:
    page = (demo_run.out / "report.html").read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert {"html", "head", "body", "table", "img"} <= set(parser.tags)
    assert len(parser.images) >= 5  # funnel, outcomes by segment and domain, latency, ...
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        width, height = png_size(data)
        assert width > 100 and height > 100
    external = [v for v in parser.attribute_values if re.match(r"\s*(https?:)?//", v)]
    assert external == []
    assert "<script" not in page.lower() and "<link" not in page.lower()


@pytest.mark.slow
def test_dashboard_png_is_a_real_picture(demo_run: DemoRun) -> None:
    data = (demo_run.out / "dashboard.png").read_bytes()
    width, height = png_size(data)
    assert width >= 800 and height >= 800
    assert len(data) > 50_000  # seven charts, not an empty canvas


@pytest.mark.slow
def test_summary_matches_what_the_sandbox_received(demo_run: DemoRun) -> None:
    rows = summary_rows(demo_run.stdout)
    assert set(rows) == {"free", "pro", "enterprise", "all"}
    total = rows["all"]
    statuses = [c for c in demo.SUMMARY_COLUMNS if c != "recipients"]
    for name, row in rows.items():
        assert sum(row[s] for s in statuses) == row["recipients"], name
    for column in demo.SUMMARY_COLUMNS:
        assert sum(rows[s][column] for s in ("free", "pro", "enterprise")) == total[column]

    contacts = pd.read_csv(ROOT / "data" / "contacts.csv", dtype=str, keep_default_na=False)
    assert total["recipients"] == len(contacts)  # every row has an outcome: nothing lost

    received = pd.read_csv(demo_run.out / "sandbox-deliveries.csv")
    assert received["delivery_count"].max() == 1
    assert not received["recipient"].str.lower().duplicated().any()  # nobody got it twice
    acknowledged = received["acknowledged"].astype(bool)
    # the server said 250 to exactly the rows the demo counts as sent (bounced and complained
    # rows were accepted first); "unknown" rows are the ones whose 250 never reached us
    assert total["sent"] + total["bounced"] + total["complained"] == int(acknowledged.sum())
    assert total["unknown"] == int((~acknowledged).sum())
    late = received["late_message"].value_counts()
    assert total["bounced"] == int(late.get("dsn", 0))
    assert total["complained"] == int(late.get("arf", 0))
    assert total["bounced"] > 0 and total["complained"] > 0 and total["failed"] > 0


@pytest.mark.slow
def test_journal_holds_the_same_campaign(demo_run: DemoRun) -> None:
    rows = summary_rows(demo_run.stdout)["all"]
    outcomes = smtpkit.outcomes(demo_run.out / "journal.db", demo.CAMPAIGN)
    counts = outcomes["status"].value_counts()
    assert len(outcomes) == rows["recipients"]
    for status in ("failed", "deferred", "unknown", "skipped"):
        assert int(counts.get(status, 0)) == rows[status], status
    # the journal marks hard bounces and complaints (those suppress the address next time);
    # the summary also counts soft bounces such as a full mailbox
    accepted = sum(int(counts.get(s, 0)) for s in ("sent", "bounced", "complained"))
    assert accepted == rows["sent"] + rows["bounced"] + rows["complained"]
    assert int(counts.get("complained", 0)) == rows["complained"]
    recorded = smtpkit.Journal(demo_run.out / "journal.db").bounces(demo.CAMPAIGN)
    assert (recorded["kind"] == "bounce").sum() == rows["bounced"]


@pytest.mark.slow
def test_demo_output_never_mentions_a_password(demo_run: DemoRun) -> None:
    assert "password" not in (demo_run.stdout + demo_run.stderr).lower()


def test_help_shows_an_example() -> None:
    completed = subprocess.run([str(console_script()), "demo", "--help"], capture_output=True,
                               text=True, timeout=60, check=True)
    assert "example:" in completed.stdout and "smtpkit demo --out" in completed.stdout


# --- in process: the pieces the full run cannot show ---------------------------------------


@pytest.mark.slow
def test_small_demo_in_process_leaks_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Learn the sandbox's generated password by recording what secrets.token_urlsafe returns
    # (the values stay random), then look for it in everything the demo printed and wrote.
    issued: list[str] = []
    real = secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        value = real(nbytes)
        issued.append(value)
        return value

    monkeypatch.setattr(secrets, "token_urlsafe", recording)
    contacts = make_contacts(300, seed=11)
    result = demo.run_demo(tmp_path / "out", contacts=contacts, progress=False)
    printed = capsys.readouterr()

    assert issued, "the sandbox did not generate a password"
    written = [p.read_bytes().decode("utf-8", "replace") for p in
               (result.report, result.deliveries_file)]
    for password in issued:
        assert password not in printed.out + printed.err
        assert all(password not in text for text in written)
        assert password not in repr(result) and password not in result._repr_html_()

    summary = result.summary
    assert summary.loc["all", "recipients"] == len(contacts) == len(result.outcomes)
    assert list(result.outcomes.index) == list(contacts.index)
    assert summary.loc["all", "sent"] + summary.loc["all", "bounced"] + \
        summary.loc["all", "complained"] == int(result.deliveries["acknowledged"].sum())
    assert result.dashboard.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_a_second_run_is_a_fresh_campaign(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = demo.run_demo(out, contacts=make_contacts(120, seed=3), progress=False)
    second = demo.run_demo(out, contacts=make_contacts(120, seed=3), progress=False)
    # a resumed campaign would send nothing to the second (new) sandbox
    assert len(second.deliveries) == len(first.deliveries) > 0
    assert smtpkit.Journal(out / "journal.db").campaigns()["runs"].tolist() == [1]
    assert len(smtpkit.outcomes(out / "journal.db", demo.CAMPAIGN)) == 120


def test_the_previous_run_is_cleared_but_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    demo._prepare_folder(out)  # a first run marks the folder as the demo's
    assert (out / ".smtpkit-demo").is_file()
    (out / "Maildir" / "new").mkdir(parents=True)
    (out / "Maildir" / "new" / "1.eml").write_text("old bounce")
    for name in ("journal.db", "journal.db-wal", "report.html", "dashboard.png"):
        (out / name).write_text("old")
    (out / "notes.txt").write_text("mine")
    demo._prepare_folder(out)
    assert sorted(p.name for p in out.iterdir()) == [".smtpkit-demo", "notes.txt"]
    demo._prepare_folder(out / "new" / "folder")
    assert (out / "new" / "folder").is_dir()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("file", "is a file; give the demo a folder", id="out-is-a-file"),
        pytest.param("foreign-maildir", "holds more than a Maildir", id="foreign-maildir"),
        pytest.param("real-maildir", "was not made by smtpkit demo", id="home-with-a-maildir"),
    ],
)
def test_refuses_an_output_folder_it_does_not_own(tmp_path: Path, setup: str,
                                                  message: str) -> None:
    out = tmp_path / "out"
    if setup == "file":
        out.write_text("not a folder")
    elif setup == "foreign-maildir":
        demo._prepare_folder(out)
        (out / "Maildir" / "cur").mkdir(parents=True)
        (out / "Maildir" / "precious").mkdir()
        (out / "journal.db").write_text("a previous run")
    else:  # e.g. `smtpkit demo --out ~`: a real Maildir (only cur/new/tmp) and other files
        (out / "Maildir" / "cur").mkdir(parents=True)
        (out / "Maildir" / "new").mkdir()
        (out / "Maildir" / "tmp").mkdir()
        (out / "Maildir" / "cur" / "1700000000.M1P1.host:2,S").write_text("real mail")
        (out / "report.html").write_text("someone's report")
    with pytest.raises(InputError, match=message):
        demo.run_demo(out, contacts=make_contacts(10), progress=False)
    if setup == "foreign-maildir":  # refused before anything was deleted
        assert (out / "Maildir" / "precious").is_dir()
        assert (out / "journal.db").read_text() == "a previous run"
    elif setup == "real-maildir":
        assert (out / "Maildir" / "cur" / "1700000000.M1P1.host:2,S").read_text() == "real mail"
        assert (out / "report.html").read_text() == "someone's report"
        assert not (out / ".smtpkit-demo").exists()


def test_refuses_contacts_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="contacts must be a contact file path, a DataFrame"):
        demo.run_demo(tmp_path, contacts=42, progress=False)  # type: ignore[arg-type]


def test_refuses_a_list_without_the_template_columns(tmp_path: Path) -> None:
    contacts = pd.DataFrame({"email": ["ann@example.com"], "first_name": ["Ann"]})
    with pytest.raises(MissingColumnError, match=r"need the columns 'contact_id', 'last_name', "
                                                 r"'plan', which the contact list"):
        demo.run_demo(tmp_path, contacts=contacts, progress=False)
    assert not (tmp_path / "journal.db").exists()  # refused before anything was sent


def test_without_a_checkout_the_sample_list_is_generated(tmp_path: Path) -> None:
    frame, source = demo._default_contacts(tmp_path / "no-such" / "contacts.csv")
    assert "make_contacts" in source
    assert len(frame) == 5000
    checkout = pd.read_csv(ROOT / "data" / "contacts.csv", dtype=str, keep_default_na=False)
    assert frame["contact_id"].tolist() == checkout["contact_id"].tolist()


def test_decide_keeps_every_row_and_says_why(tmp_path: Path) -> None:
    contacts = pd.DataFrame({
        "email": ["ann@gmial.com", "ann@gmail.com", "bob@mailinator.com", "cy@example.com",
                  "dee@example.com", "nope"],
        "opt_in": ["True", "True", "True", "False", "true", "True"],
        "plan": ["free", "pro", "free", "pro", None, "free"],
    })
    before = contacts.copy()
    decided = demo.decide(contacts)
    pd.testing.assert_frame_equal(contacts, before)  # the input is not changed
    assert decided["reason"].tolist() == ["ok", "duplicate", "disposable", "no_consent", "ok",
                                          "no_at_sign"]
    assert decided["sendable"].tolist() == [True, False, False, False, True, False]
    assert decided["email"].iloc[0] == "ann@gmail.com"  # the typo was fixed, then cleaned
    assert decided["segment"].tolist() == ["free", "pro", "free", "pro", "other", "free"]
    assert decided.index.equals(contacts.index)
