"""The send engine after the independent review: one key per mailbox (dedupe and suppression),
MX certificates checked against the MX host name, readers that never create a journal, clear
errors for duplicated columns, and the input's MultiIndex back from the journal.

Real parts only: the Sandbox or a small aiosmtpd server on 127.0.0.1, real SQLite journals; a
StaticBackend resolver stands in for public DNS.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import smtpkit
from smtpkit._address_key import address_key, address_keys
from smtpkit.bounces import BounceRecord, bounces_frame
from smtpkit.config import MXDelivery
from smtpkit.dns import Resolver, StaticBackend
from smtpkit.errors import InputError, JournalError
from smtpkit.journal import Journal, suppressed_addresses
from smtpkit.sandbox import Sandbox
from smtpkit.send import RetryPolicy, send

FAST = RetryPolicy(attempts=2, backoff=0.1, factor=1.0, jitter=0.0)
TEMPLATE = smtpkit.Template(subject="Hi {first_name}", text="Hello {first_name}.",
                            sender="news@shop.example")


def frame_of(*addresses: str, index: Any = None) -> pd.DataFrame:
    return pd.DataFrame({"email": list(addresses),
                         "first_name": [f"N{i}" for i in range(len(addresses))]}, index=index)


def deliveries(box: Sandbox) -> dict[str, int]:
    frame = box.deliveries()
    if frame.empty:
        return {}
    return frame.groupby("recipient").size().astype(int).to_dict()


# --- 1. one key per mailbox ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        pytest.param("Ann@Example.COM", "ann@example.com", id="ascii-case"),
        pytest.param("ann@bücher.example", "ann@xn--bcher-kva.example", id="u-label-domain"),
        pytest.param("ann@XN--BCHER-KVA.example", "ann@xn--bcher-kva.example",
                     id="a-label-domain-upper"),
        pytest.param("ann@BÜCHER.Example", "ann@xn--bcher-kva.example", id="u-label-upper"),
        pytest.param("zoe\u0308@example.com", "zo\u00eb@example.com", id="nfd-local-part"),
        pytest.param("ZO\u00cb@example.com", "zo\u00eb@example.com", id="upper-local-part"),
        pytest.param("straße@Example.com", "straße@example.com", id="sharp-s-kept"),
        pytest.param("x@bü..example", "x@bü..example", id="domain-not-idna"),
    ],
)
def test_address_key(address: str, key: str) -> None:
    assert address_key(address) == key
    assert address_key(key) == key  # the key of a key is itself
    assert address_keys(pd.Series([address, None], dtype="string")).tolist() == [key, pd.NA]


def test_one_mailbox_in_any_spelling_is_sent_once_from_an_uncleaned_frame() -> None:
    frame = frame_of(
        "ann@bücher.example", "ann@xn--bcher-kva.example", "Ann@BÜCHER.example",
        "zo\u00eb@example.com", "zoe\u0308@example.com", "ZO\u00cb@example.com",
        "bob@example.com", " BOB@example.com",
    )
    with Sandbox(tls=False) as box:
        result = send(frame, TEMPLATE, box.config, campaign="idn", journal=None, progress=False)
        got = deliveries(box)
    assert got == {"ann@xn--bcher-kva.example": 1, "zo\u00eb@example.com": 1,
                   "bob@example.com": 1}
    assert result["status"].tolist() == ["sent", "skipped", "skipped"] * 2 + ["sent", "skipped"]
    assert result["reason"].tolist()[1:3] == ["duplicate", "duplicate"]


# --- 2. recorded reports suppress every spelling -------------------------------------------


def test_recorded_reports_suppress_every_spelling_of_the_address(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    with Sandbox(tls=False) as box:
        first = send(frame_of("carl@bücher.example", "dora@example.com"), TEMPLATE, box.config,
                     campaign="c1", journal=db, progress=False)
        Journal(db).record_bounces(None, bounces_frame([
            BounceRecord("straße@example.com", "complaint", "complaint", True),
            BounceRecord("ann@xn--bcher-kva.example", "bounce", "user_unknown", True),
            BounceRecord("Bob@Example.com", "bounce", "user_unknown", True),
            # a report that names nobody: matched to c1's row by its VERP sender only
            BounceRecord(None, "bounce", "user_unknown", True,
                         bounce_to=first.loc[0, "envelope_sender"]),
        ]))
        later = frame_of("straße@example.com", "ann@bücher.example", "bob@example.com",
                         "CARL@xn--bcher-kva.example", "dora@example.com")
        for name, frame in (("raw", later), ("cleaned", smtpkit.clean(later))):
            result = send(frame, TEMPLATE, box.config, campaign=f"c2-{name}", journal=db,
                          progress=False)
            assert result["reason"].tolist() == ["suppressed"] * 4 + ["accepted"], name
        assert deliveries(box) == {"carl@xn--bcher-kva.example": 1, "dora@example.com": 3}
    assert suppressed_addresses(db) == {
        "straße@example.com", "ann@xn--bcher-kva.example", "bob@example.com",
        "carl@xn--bcher-kva.example",
    }
    # the list an analyst feeds to clean() names the same mailboxes, the VERP-matched one too
    assert set(smtpkit.suppressions(db)["email"]) == suppressed_addresses(db)
    assert Journal(db).bounces()["recipient"].tolist()[-1] == "carl@bücher.example"


def test_suppressions_list_one_row_per_mailbox(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    Journal(db).record_bounces(None, bounces_frame([
        BounceRecord("ann@bücher.example", "bounce", "user_unknown", True),
        BounceRecord("ANN@xn--bcher-kva.example", "complaint", "complaint", True),
        BounceRecord("straße@example.com", "bounce", "user_unknown", True),
    ]))
    listed = smtpkit.suppressions(db)
    assert listed["email"].tolist() == ["ann@xn--bcher-kva.example", "straße@example.com"]
    # the list still works as clean()'s suppression list
    cleaned = smtpkit.clean(frame_of("ann@bücher.example", "straße@example.com", "x@example.com"),
                            suppress=listed)
    assert cleaned["suppressed"].tolist() == [True, True, False]


# --- 3. MX certificates are checked against the MX host name -------------------------------


class NamedCertificates:
    """A server TLS context that shows, per requested name (SNI), a certificate for that name
    when it is in ``good``, else one for another host; it records the names asked for."""

    def __init__(self, folder: Path, good: set[str]) -> None:
        import trustme

        self.ca = trustme.CA()
        self.good = good
        self.asked: list[str | None] = []
        self.ca_file = str(folder / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.context = self._issue("elsewhere.example.org")
        self.context.sni_callback = self._pick

    def _issue(self, name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(name).configure_cert(context)  # the name only: no IP address
        return context

    def _pick(self, connection: Any, name: str | None, _: ssl.SSLContext) -> None:
        self.asked.append(name)
        if name in self.good:
            if name not in self._contexts:
                self._contexts[name] = self._issue(name)
            connection.context = self._contexts[name]


ZONE = {
    "example.net": {"MX": ["10 mx1.example.net.", "20 mx2.example.net."]},
    "mx1.example.net": {"A": ["127.0.0.1"]},
    "mx2.example.net": {"A": ["127.0.0.1"]},
}


def mx_send(frame: pd.DataFrame, port: int, ca_file: str, db: Path | None = None,
            **options: Any) -> pd.DataFrame:
    mx = MXDelivery(resolver=Resolver(backend=StaticBackend(ZONE)), port=port, ca_file=ca_file,
                    timeout=5.0)
    options.setdefault("campaign", "mx")
    return send(frame, TEMPLATE, mx, journal=db, progress=False, retries=FAST, **options)


@pytest.mark.parametrize(
    ("good", "server_name"),
    [
        pytest.param({"mx1.example.net", "mx2.example.net"}, "mx1.example.net",
                     id="certificate-names-the-mx-host"),
        pytest.param({"mx2.example.net"}, "mx2.example.net",
                     id="tls-failure-on-mx1-tries-mx2"),
    ],
)
def test_mx_delivery_checks_the_certificate_against_the_mx_host_name(
    tmp_path: Path, good: set[str], server_name: str
) -> None:
    from test_send_servers import ScriptedHandler, SMTPServer

    names = NamedCertificates(tmp_path, good)
    handler = ScriptedHandler()
    with SMTPServer(handler, tls="starttls", server_context=names.context) as server:
        result = mx_send(frame_of("ann@example.net"), server.port, names.ca_file)
    assert tuple(result.loc[0, ["status", "reason"]]) == ("sent", "accepted")
    assert handler.delivered_to() == {"ann@example.net": 1}
    assert names.asked[-1] == server_name  # never the IP address


def test_tls_failing_on_every_mx_host_is_deferred_and_sent_by_a_later_run(
    tmp_path: Path,
) -> None:
    from test_send_servers import ScriptedHandler, SMTPServer

    names = NamedCertificates(tmp_path, good=set())
    handler = ScriptedHandler()
    db = tmp_path / "j.db"
    frame = frame_of("ann@example.net", "bob@example.net", "cy@example.net")
    with SMTPServer(handler, tls="starttls", server_context=names.context) as server:
        first = mx_send(frame, server.port, names.ca_file, db, concurrency=1)
        asked_first = list(names.asked)
        names.good = {"mx1.example.net"}  # the domain fixed its certificate
        second = mx_send(frame, server.port, names.ca_file, db, concurrency=1)
    assert first["status"].tolist() == ["deferred"] * 3
    assert first["reason"].tolist() == ["tls_failed"] * 3
    assert first["smtp_message"].str.contains("mx2.example.net").all()
    # each MX host's TLS was tried once in the run, not once per row
    assert asked_first == ["mx1.example.net", "mx2.example.net"]
    assert second["status"].tolist() == ["sent"] * 3
    assert handler.delivered_to() == {a: 1 for a in frame["email"]}


# --- 4. readers never create a journal ------------------------------------------------------


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda p: smtpkit.suppressions(p), id="suppressions"),
        pytest.param(lambda p: suppressed_addresses(p), id="suppressed_addresses"),
        pytest.param(lambda p: Journal(p).campaigns(), id="campaigns"),
        pytest.param(lambda p: Journal(p).bounces(), id="bounces"),
        pytest.param(lambda p: smtpkit.outcomes(p, "spring"), id="outcomes"),
        pytest.param(lambda p: smtpkit.attempts(p, "spring"), id="attempts"),
    ],
)
def test_reading_a_mistyped_journal_path_is_an_error(tmp_path: Path, read: Any) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(JournalError) as caught:
        read(path)
    assert str(caught.value) == (f"There is no journal at {str(path)!r}; pass the file that "
                                 "send(..., journal=...) wrote.")
    assert not path.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(JournalError, match=r"There is no journal in .* \(the file is empty\)"):
        read(empty)
    assert empty.stat().st_size == 0


def test_the_html_view_of_a_missing_journal_says_so_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    assert "There is no journal at" in Journal(path)._repr_html_()
    assert not path.exists()


# --- 5. duplicated column names --------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        pytest.param(["email", "first_name", "first_name"], "'first_name'", id="template-field"),
        pytest.param(["email", "email", "first_name"], "'email'", id="address-column"),
    ],
)
def test_duplicated_column_names_are_refused_before_anything_is_sent(
    tmp_path: Path, columns: list[str], named: str
) -> None:
    frame = pd.DataFrame([["a@example.com", "b@example.com", "A"]], columns=columns)
    db = tmp_path / "j.db"
    with Sandbox(tls=False) as box, pytest.raises(InputError) as caught:
        send(frame, TEMPLATE, box.config, campaign="dup", journal=db, progress=False)
    assert str(caught.value) == (
        f"The frame has more than one column named {named}, so it is not clear which one to "
        "use; rename or drop the extra ones (frame.loc[:, ~frame.columns.duplicated()] keeps "
        "the first of each) and try again."
    )
    assert box.deliveries().empty and not db.exists()


# --- 6. the input's index comes back from the journal ----------------------------------------


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(pd.MultiIndex.from_tuples([("x", 1), ("y", 2), ("y", 3)],
                                               names=["k", "n"]), id="named-multiindex"),
        pytest.param(pd.MultiIndex.from_tuples([("x", 1), ("y", 2), ("y", 3)]),
                     id="unnamed-multiindex"),
        pytest.param(pd.Index(["r1", "r2", "r3"], name="contact"), id="named-index"),
        pytest.param(pd.Index([("a", 1), ("b", 2), ("c", 3)], tupleize_cols=False),
                     id="index-of-tuples"),
    ],
)
def test_outcomes_and_attempts_keep_the_input_index(tmp_path: Path, index: pd.Index) -> None:
    db = tmp_path / "j.db"
    frame = frame_of("a@example.com", "b@example.com", "c@example.com", index=index)
    with Sandbox(tls=False) as box:
        result = send(frame, TEMPLATE, box.config, campaign="mi", journal=db, progress=False)
    assert result.index.equals(frame.index) and result.index.names == frame.index.names
    for back in (smtpkit.outcomes(db, "mi"), smtpkit.attempts(db, "mi")):
        assert type(back.index) is type(frame.index)
        assert back.index.equals(frame.index)
        assert list(back.index.names) == list(frame.index.names)
    assert smtpkit.outcomes(db, "mi")["status"].tolist() == ["sent"] * 3
