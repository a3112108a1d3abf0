"""Table tests for smtpkit.clean: every reason code, every kind of bad input, every flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import smtpkit
from smtpkit import clean, clean_report
from smtpkit._sample import make_contacts
from smtpkit.clean import CLEAN_COLUMNS, REASONS, extract_address
from smtpkit.dns import DNSReply, Resolver, StaticBackend
from smtpkit.errors import ConfigError, InputError, MissingColumnError

DATA = Path(__file__).parent / "data"


def one(cell: Any, **options: Any) -> pd.Series:
    """Clean a one-row object column and return that row."""
    frame = pd.DataFrame({"email": pd.Series([cell], dtype=object)})
    return clean(frame, **options).iloc[0]


# --- a reason for every kind of input -------------------------------------------------------

REASON_CASES = [
    pytest.param("jane@example.com", "ok", id="ok"),
    pytest.param(None, "missing", id="none"),
    pytest.param(float("nan"), "missing", id="nan"),
    pytest.param(pd.NA, "missing", id="pd-na"),
    pytest.param(12345, "not_text", id="int"),
    pytest.param(3.5, "not_text", id="float"),
    pytest.param(True, "not_text", id="bool"),
    pytest.param(b"\xffjane@example.com", "not_text", id="non-ascii-bytes"),
    pytest.param(["jane@example.com"], "not_text", id="list-in-a-cell"),
    pytest.param("", "blank", id="empty"),
    pytest.param("   \t ", "blank", id="whitespace-only"),
    pytest.param("\u00a0\ufeff", "blank", id="nbsp-and-bom-only"),
    pytest.param("jane\r\n@example.com", "control_characters", id="crlf-inside"),
    pytest.param("jane@example.com\r\n", "control_characters", id="crlf-at-the-end"),
    pytest.param("jane@example.com\nRCPT TO:<x@y.z>", "control_characters", id="smtp-injection"),
    pytest.param("ja\tne@example.com", "control_characters", id="tab-inside"),
    pytest.param("jane@exam\x00ple.com", "control_characters", id="nul"),
    pytest.param("jane\x7f@example.com", "control_characters", id="del"),
    pytest.param("jane\x85@example.com", "control_characters", id="c1-next-line"),
    pytest.param("jane\u2028@example.com", "control_characters", id="line-separator"),
    pytest.param("Jane\r <jane@example.com>", "control_characters", id="cr-in-display-name"),
    pytest.param("a" * 250 + "@example.com", "too_long", id="over-254-bytes"),
    pytest.param("x" * 1_000_000, "too_long", id="one-megabyte-cell"),
    pytest.param("jane.example.com", "no_at_sign", id="no-at"),
    pytest.param("jane＠example.com", "no_at_sign", id="full-width-at"),
    pytest.param("@example.com", "empty_local", id="nothing-before-at"),
    pytest.param("jane@", "empty_domain", id="nothing-after-at"),
    pytest.param("jane..doe@example.com", "invalid_local", id="two-dots-local"),
    pytest.param(".jane@example.com", "invalid_local", id="leading-dot"),
    pytest.param("jane.@example.com", "invalid_local", id="trailing-dot-local"),
    pytest.param("jane doe@example.com", "invalid_local", id="space-in-local"),
    pytest.param("jane(at)example.com", "no_at_sign", id="at-spelled-out"),
    pytest.param("jane@@example.com", "invalid_domain", id="two-at-signs"),
    pytest.param("jane@example", "invalid_domain", id="no-period"),
    pytest.param("jane@example.com.", "invalid_domain", id="trailing-dot-domain"),
    pytest.param("jane@example..com", "invalid_domain", id="two-dots-domain"),
    pytest.param("jane@-example.com", "invalid_domain", id="leading-hyphen"),
    pytest.param("jane@exa_mple.com", "invalid_domain", id="underscore-in-domain"),
    pytest.param("jane@example.123", "invalid_domain", id="numeric-tld"),
    pytest.param("jane@ab--cd.com", "invalid_domain", id="r-ldh-label"),
    pytest.param("jane@xn--zz.com", "invalid_domain", id="bad-punycode"),
    pytest.param("jane@a,b.com", "invalid_domain", id="comma-in-domain"),
    pytest.param("jane@" + "a" * 64 + ".com", "too_long", id="label-over-63"),
    pytest.param("jane@printer.local", "reserved_domain", id="dot-local"),
    pytest.param("jane@ci.TEST", "reserved_domain", id="dot-test"),
    pytest.param("jane@host.localhost", "reserved_domain", id="localhost"),
    pytest.param("jane@x.onion", "reserved_domain", id="onion"),
    pytest.param("jane@1.in-addr.arpa", "reserved_domain", id="arpa"),
    pytest.param("ja\u200bne@example.com", "unsafe_characters", id="zero-width-space"),
    pytest.param("jane@exam\u202eple.com", "unsafe_characters", id="bidi-override-domain"),
    pytest.param('"john doe"@example.com', "quoted_local", id="quoted-local"),
    pytest.param("jane@[192.0.2.1]", "domain_literal", id="ip-literal"),
    pytest.param("Jane <jane@example.com> extra", "display_name", id="text-after-brackets"),
    pytest.param('"a"b@example.com', "invalid_syntax", id="text-after-close-quote"),
]


@pytest.mark.parametrize(("cell", "reason"), REASON_CASES)
def test_reason_for_each_kind_of_input(cell: Any, reason: str) -> None:
    row = one(cell)
    assert row["reason"] == reason, row["reason_detail"]
    assert bool(row["valid"]) is (reason == "ok")
    assert bool(row["sendable"]) is (reason == "ok")
    if reason == "ok":
        assert row["reason_detail"] is pd.NA
    else:
        assert isinstance(row["reason_detail"], str) and len(row["reason_detail"]) > 10
        assert row["email_normalized"] is pd.NA


def test_every_documented_reason_is_reachable_and_tested() -> None:
    tested = {p.values[1] for p in REASON_CASES}
    elsewhere = {"smtputf8_required", "duplicate", "suppressed", "nxdomain", "null_mx", "no_mx"}
    assert set(REASONS) == tested | elsewhere


def test_control_character_detail_names_the_character() -> None:
    assert one("jane\r@example.com")["reason_detail"] == (
        "The address contains CARRIAGE RETURN U+000D; such a value must never reach SMTP."
    )
    assert "LINE FEED U+000A" in one("jane@example.com\n")["reason_detail"]


def test_not_text_detail_names_the_type() -> None:
    assert one(12345)["reason_detail"] == "The cell holds a int (12345), not text."


def test_ascii_bytes_are_read_as_text() -> None:
    row = one(b"Jane@Example.COM")
    assert row["reason"] == "ok" and row["email_normalized"] == "Jane@example.com"


def test_lone_surrogate_in_an_object_column_gets_a_reason() -> None:
    row = one("ja\ud800ne@example.com")
    assert row["reason"] == "unsafe_characters" and not row["valid"]


def test_smtputf8_required_when_not_allowed() -> None:
    row = one("josé@example.com", allow_smtputf8=False)
    assert row["reason"] == "smtputf8_required"
    assert row["reason_detail"].startswith(
        "Internationalized characters before the @-sign are not supported"
    )
    assert one("jane@bücher.de", allow_smtputf8=False)["reason"] == "ok"  # only the local part


# --- normalized fields -----------------------------------------------------------------------

NORMALIZED_CASES = [
    pytest.param("Jane.Doe@Example.COM", "Jane.Doe@example.com", "Jane.Doe@example.com", False,
                 id="domain-lower-cased-local-kept"),
    pytest.param("INFO@Example.com", "info@example.com", "info@example.com", False,
                 id="rfc2142-name-lower-cased"),
    pytest.param("jane@Bücher.example.DE", "jane@bücher.example.de",
                 "jane@xn--bcher-kva.example.de", False, id="idn-domain"),
    pytest.param("jane@xn--bcher-kva.example.de", "jane@bücher.example.de",
                 "jane@xn--bcher-kva.example.de", False, id="punycode-domain"),
    pytest.param("josé@example.com", "josé@example.com", pd.NA, True, id="intl-local"),
    pytest.param("jose\u0301@example.com", "josé@example.com", pd.NA, True, id="nfc-local"),
]


@pytest.mark.parametrize(("cell", "normalized", "ascii_email", "smtputf8"), NORMALIZED_CASES)
def test_normalized_fields(cell: str, normalized: str, ascii_email: Any, smtputf8: bool) -> None:
    row = one(cell)
    assert row["email_normalized"] == normalized
    assert row["local"] + "@" + row["domain"] == normalized
    assert row["ascii_email"] is ascii_email if ascii_email is pd.NA else (
        row["ascii_email"] == ascii_email
    )
    assert bool(row["smtputf8"]) is smtputf8


EXTRACT_CASES = [
    pytest.param("  jane@example.com\t", "jane@example.com", id="whitespace"),
    pytest.param("\u00a0jane@example.com\ufeff", "jane@example.com", id="nbsp-bom"),
    pytest.param("Jane Doe <jane@example.com>", "jane@example.com", id="display-name"),
    pytest.param('"Doe, Jane" <jane@example.com>', "jane@example.com", id="quoted-display-name"),
    pytest.param("<jane@example.com>", "jane@example.com", id="angle-brackets-only"),
    pytest.param("mailto:jane@example.com", "jane@example.com", id="mailto"),
    pytest.param("MAILTO:jane@example.com", "jane@example.com", id="mailto-upper"),
    pytest.param("Jane <mailto:jane@example.com>", "jane@example.com", id="display-mailto"),
    pytest.param('"jane@example.com"', "jane@example.com", id="double-quotes"),
    pytest.param("'jane@example.com'", "jane@example.com", id="single-quotes"),
    pytest.param('"john doe"@example.com', '"john doe"@example.com', id="quoted-local-kept"),
    pytest.param("a <b> <c@d.com>", "a <b> <c@d.com>", id="two-bracket-pairs-kept"),
]


@pytest.mark.parametrize(("cell", "address"), EXTRACT_CASES)
def test_extract_address(cell: str, address: str) -> None:
    assert extract_address(cell) == address


def test_extraction_keeps_the_original_cell() -> None:
    frame = pd.DataFrame({"email": ["Jane Doe <Jane@Example.com>", "mailto:bob@example.com"]})
    out = clean(frame)
    assert out["email"].tolist() == frame["email"].tolist()
    assert out["email_normalized"].tolist() == ["Jane@example.com", "bob@example.com"]
    assert out["sendable"].all()


# --- the frame as a whole ---------------------------------------------------------------------


def test_columns_dtypes_index_and_order_kept_input_untouched() -> None:
    frame = pd.DataFrame(
        {"name": ["b", "a", "c", "d"], "email": ["b@x.com", None, "bad", "B@X.com"]},
        index=pd.Index(["r9", "r1", "r5", "r2"], name="id"),
    )
    before = frame.copy(deep=True)
    out = clean(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.columns) == ["name", "email", *[c for c in CLEAN_COLUMNS if c != "mx_ok"]]
    assert out.index.equals(frame.index)
    assert out["name"].tolist() == ["b", "a", "c", "d"]
    assert out["reason"].tolist() == ["ok", "missing", "no_at_sign", "duplicate"]
    assert out["duplicate_of"].tolist() == [None, None, None, "r9"]
    for name in ("valid", "duplicate", "role", "disposable", "suppressed", "sendable", "smtputf8"):
        assert out[name].dtype == bool, name
    for name in ("email_normalized", "local", "domain", "ascii_email", "reason", "reason_detail",
                 "suggestion"):
        assert out[name].dtype == "string", name
    assert out.attrs["smtpkit_email_column"] == "email"


def test_duplicates_ignore_case_and_whitespace_and_point_at_the_first_valid_row() -> None:
    frame = pd.DataFrame(
        {"email": ["nope", "Ann@Example.com", " ann@example.COM ", "ANN@EXAMPLE.COM", "bob@x.io",
                   "Ann <ann@example.com>"]},
        index=[10, 11, 12, 13, 14, 15],
    )
    out = clean(frame)
    assert out["duplicate"].tolist() == [False, False, True, True, False, True]
    assert out["duplicate_of"].dtype == "Int64"
    assert out["duplicate_of"].tolist() == [pd.NA, pd.NA, 11, 11, pd.NA, 11]
    # email_normalized stays exactly what email-validator returns (local-part case kept)
    assert out["email_normalized"].tolist()[1:4] == [
        "Ann@example.com", "ann@example.com", "ANN@example.com"
    ]
    assert out["sendable"].tolist() == [False, True, False, False, True, False]
    assert not clean(frame, dedupe=False)["duplicate"].any()
    assert clean(frame, dedupe=False)["sendable"].sum() == 5


def test_an_invalid_row_is_never_a_duplicate_or_an_original() -> None:
    out = clean(pd.DataFrame({"email": ["a..b@x.com", "a..b@x.com", "a.b@x.com"]}))
    assert out["duplicate"].tolist() == [False, False, False]
    assert out["reason"].tolist() == ["invalid_local", "invalid_local", "ok"]


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(pd.Series(["a@x.com", None], dtype="string"), id="string-dtype"),
        pytest.param(pd.Series(["a@x.com", None], dtype="str"), id="str-dtype"),
        pytest.param(pd.Series(["a@x.com", None], dtype=object), id="object-dtype"),
        pytest.param(pd.Series(["a@x.com", None], dtype="category"), id="category"),
        pytest.param(pd.Series(["a@x.com", None], dtype=pd.ArrowDtype(pa.string())),
                     id="arrow-dtype"),
    ],
)
def test_column_dtypes(column: pd.Series) -> None:
    out = clean(pd.DataFrame({"email": column}))
    assert out["reason"].tolist() == ["ok", "missing"]


def test_empty_and_all_missing_frames() -> None:
    out = clean(pd.DataFrame({"email": pd.Series([], dtype=object)}))
    assert len(out) == 0 and "sendable" in out.columns
    out = clean(pd.DataFrame({"email": [None, None]}))
    assert out["reason"].tolist() == ["missing", "missing"]


def test_existing_result_columns_are_replaced_in_the_copy_only() -> None:
    frame = pd.DataFrame({"email": ["a@x.com"], "valid": ["old"]})
    out = clean(clean(frame))
    assert out["valid"].tolist() == [True]
    assert frame["valid"].tolist() == ["old"]
    assert list(out.columns).count("valid") == 1


def test_column_option_and_attrs_default() -> None:
    frame = pd.DataFrame({"Mail": ["a@x.com"]})
    assert clean(frame, column="Mail")["sendable"].all()
    frame.attrs["smtpkit_email_column"] = "Mail"
    assert clean(frame)["sendable"].all()


def test_caller_mistakes_raise_clear_errors() -> None:
    frame = pd.DataFrame({"name": ["x"], "mail": ["a@x.com"]})
    with pytest.raises(MissingColumnError) as info:
        clean(frame)
    assert str(info.value) == (
        "The frame has no column 'email'; its columns are 'name', 'mail'. Pass column='...' "
        "with the one that holds the email addresses."
    )
    with pytest.raises(InputError, match=r"takes a pandas DataFrame, not Series\. Use"):
        clean(frame["mail"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pass check_mx=True too"):
        clean(frame, column="mail", resolver=Resolver(backend=StaticBackend({})))
    twice = pd.DataFrame([["a@x.com", "b@x.com"]], columns=["email", "email"])
    with pytest.raises(InputError, match="more than one column named 'email'"):
        clean(twice)


def test_accessor_forwards_options() -> None:
    frame = pd.DataFrame({"addr": ["Info@Acme.com", "info@acme.com"]})
    via_accessor = frame.smtpkit.clean(column="addr", dedupe=False)
    pd.testing.assert_frame_equal(via_accessor, clean(frame, column="addr", dedupe=False))
    assert smtpkit.clean is clean


# --- flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "role"),
    [
        pytest.param("info@acme.com", True, id="info"),
        pytest.param("Sales@acme.com", True, id="sales-any-case"),
        pytest.param("postmaster@acme.com", True, id="postmaster"),
        pytest.param("noreply@acme.com", True, id="noreply"),
        pytest.param("support+tickets@acme.com", True, id="tagged-role"),
        pytest.param("jane@acme.com", False, id="person"),
        pytest.param("information@acme.com", False, id="longer-word"),
        pytest.param("info..x@acme.com", False, id="invalid-is-never-role"),
    ],
)
def test_role_accounts(cell: str, role: bool) -> None:
    assert bool(one(cell)["role"]) is role


@pytest.mark.parametrize(
    ("cell", "disposable"),
    [
        pytest.param("x@mailinator.com", True, id="mailinator"),
        pytest.param("x@MAILINATOR.COM", True, id="upper-case"),
        pytest.param("x@inbox.mailinator.com", True, id="subdomain"),
        pytest.param("x@yopmail.com", True, id="yopmail"),
        pytest.param("x@gmail.com", False, id="gmail"),
        pytest.param("x@acme-logistics.com", False, id="company"),
    ],
)
def test_disposable_domains(cell: str, disposable: bool) -> None:
    assert bool(one(cell)["disposable"]) is disposable


@pytest.mark.parametrize(
    ("cell", "suggestion"),
    [
        pytest.param("jane@gmial.com", "jane@gmail.com", id="swap"),
        pytest.param("jane@gmai.com", "jane@gmail.com", id="deletion"),
        pytest.param("jane@gmaill.com", "jane@gmail.com", id="insertion"),
        pytest.param("jane@hotmial.com", "jane@hotmail.com", id="hotmial"),
        pytest.param("jane@yaho.com", "jane@yahoo.com", id="yaho"),
        pytest.param("jane@outlok.com", "jane@outlook.com", id="outlok"),
        pytest.param("jane@gmail.con", "jane@gmail.com", id="tld-con"),
        pytest.param("jane@acme.cmo", "jane@acme.com", id="tld-typo-any-domain"),
        pytest.param("jane@gmial.con", "jane@gmail.com", id="both"),
        pytest.param("Jane@GMIAL.com", "Jane@gmail.com", id="keeps-local-case"),
        pytest.param("jane@gmail.com", pd.NA, id="correct"),
        pytest.param("jane@acme.com", pd.NA, id="unrelated"),
        pytest.param("jane@aon.com", pd.NA, id="short-provider-names-abstain"),
        pytest.param("jane@yahoo.co", pd.NA, id="ambiguous-yahoo-com-or-ca"),
        pytest.param("jane@gmial", pd.NA, id="invalid-gets-none"),
    ],
)
def test_typo_suggestions(cell: str, suggestion: Any) -> None:
    got = one(cell)["suggestion"]
    assert (got is pd.NA) if suggestion is pd.NA else (got == suggestion)
    if suggestion is not pd.NA:
        assert one(cell)["email_normalized"] != suggestion  # never applied silently


# --- suppression -------------------------------------------------------------------------------

FRAME = pd.DataFrame({"email": ["Ann@Example.com", "bob@example.com", "bad@", "cy@example.com"]})


@pytest.mark.parametrize(
    "suppress",
    [
        pytest.param(["ANN@example.com", "bad@"], id="list"),
        pytest.param({"ann@example.com", "BAD@"}, id="set"),
        pytest.param(pd.Series(["Ann <ann@example.com>", "bad@"]), id="series"),
        pytest.param(pd.DataFrame({"email": ["ann@example.com", "bad@"], "n": [1, 2]}), id="frame"),
        pytest.param(pd.DataFrame({"addr": ["ann@example.com", "bad@"]}), id="one-column-frame"),
    ],
)
def test_suppress_accepts_frames_lists_and_series(suppress: Any) -> None:
    out = clean(FRAME, suppress=suppress)
    assert out["suppressed"].tolist() == [True, False, True, False]
    assert out["reason"].tolist() == ["suppressed", "ok", "empty_domain", "ok"]
    assert out["sendable"].tolist() == [False, True, False, True]


def test_suppress_from_files(tmp_path: Path) -> None:
    text = tmp_path / "suppress.txt"
    text.write_text("# unsubscribed\nann@example.com\n\n  CY@example.com \n", encoding="utf-8")
    csv = tmp_path / "suppress.csv"
    csv.write_text("Email Address,date\nbob@EXAMPLE.com,2026-01-01\n", encoding="utf-8")
    assert clean(FRAME, suppress=text)["suppressed"].tolist() == [True, False, False, True]
    assert clean(FRAME, suppress=str(csv))["suppressed"].tolist() == [False, True, False, False]


def test_suppress_mistakes() -> None:
    with pytest.raises(InputError, match="suppress= takes a DataFrame"):
        clean(FRAME, suppress=42)
    with pytest.raises(MissingColumnError, match="no 'email' column; its columns are 'a', 'b'"):
        clean(FRAME, suppress=pd.DataFrame({"a": [1], "b": [2]}))
    with pytest.raises(InputError, match="does not exist"):
        clean(FRAME, suppress="/nonexistent/suppress.txt")


def test_suppress_wins_over_duplicate() -> None:
    frame = pd.DataFrame({"email": ["a@x.com", "A@x.com"]})
    out = clean(frame, suppress=["a@x.com"])
    assert out["reason"].tolist() == ["suppressed", "suppressed"]
    assert out["duplicate"].tolist() == [False, True]


# --- MX checks (recorded answers, never the network) -----------------------------------------


class CountingBackend(StaticBackend):
    """The static zone, counting the questions it is asked."""

    def __init__(self, zone: dict[str, Any]) -> None:
        super().__init__(zone)
        self.questions: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: Any, /, *, timeout: float) -> DNSReply:  # noqa: ASYNC109
        self.questions.append((name, rdtype))
        return await super().query(name, rdtype, timeout=timeout)


def replayed() -> CountingBackend:
    with open(DATA / "dns_answers.json", encoding="utf-8") as fh:
        return CountingBackend(json.load(fh))


MX_CASES = [
    pytest.param("ann@example.com", True, "ok", id="mx"),
    pytest.param("ann@a-only.example", True, "ok", id="a-fallback"),
    pytest.param("ann@nullmx.example", False, "null_mx", id="null-mx"),
    pytest.param("ann@nothing.example", False, "no_mx", id="no-mx-no-a"),
    pytest.param("ann@private-a.example", False, "no_mx", id="only-private-a"),
    pytest.param("ann@spf-reject.example", False, "no_mx", id="no-mx-spf-all"),
    pytest.param("ann@missing.example", False, "nxdomain", id="nxdomain"),
    pytest.param("ann@slow.example", pd.NA, "ok", id="timeout-keeps-the-row"),
    pytest.param("ann@broken.example", pd.NA, "ok", id="servfail-keeps-the-row"),
    pytest.param("ann@bücher.example", True, "ok", id="idn-asks-the-ascii-name"),
]


@pytest.mark.parametrize(("cell", "mx_ok", "reason"), MX_CASES)
def test_check_mx(cell: str, mx_ok: Any, reason: str) -> None:
    row = one(cell, check_mx=True, resolver=Resolver(backend=replayed()))
    assert (row["mx_ok"] is pd.NA) if mx_ok is pd.NA else (row["mx_ok"] == mx_ok)
    assert row["reason"] == reason
    assert bool(row["sendable"]) is (reason == "ok")
    if mx_ok is pd.NA:
        assert "deliverability is unknown" in row["reason_detail"]


def test_check_mx_asks_once_per_domain_and_caches_across_calls() -> None:
    backend = replayed()
    resolver = Resolver(backend=backend)
    frame = pd.DataFrame({"email": ["a@example.com", "b@EXAMPLE.com", "c@nullmx.example",
                                    "bad@", None, "d@example.com"]})
    out = clean(frame, check_mx=True, resolver=resolver)
    assert out["mx_ok"].tolist() == [True, True, False, pd.NA, pd.NA, True]
    assert out["mx_ok"].dtype == "boolean"
    assert sorted(backend.questions) == [("example.com", "MX"), ("nullmx.example", "MX")]
    clean(frame, check_mx=True, resolver=resolver)
    assert len(backend.questions) == 2  # the second call is answered from the cache


def test_check_mx_with_the_sandbox_resolver() -> None:
    """The Sandbox's resolver answers its world's DNS: what the demo and notebooks clean with."""
    from smtpkit.sandbox import Domain, Sandbox, World

    world = World(seed=0, domains={"shop.example": Domain(),
                                   "parked.example": Domain(dns="null_mx"),
                                   "down.example": Domain(dns="servfail")})
    frame = pd.DataFrame({"email": ["ann@shop.example", "bob@Parked.example",
                                    "cy@gone.example", "dee@down.example"]})
    with Sandbox(world) as box:
        out = clean(frame, check_mx=True, resolver=box.resolver)
    assert out["mx_ok"].tolist() == [True, False, False, pd.NA]
    assert out["reason"].tolist() == ["ok", "null_mx", "nxdomain", "ok"]
    assert out["sendable"].tolist() == [True, False, False, True]  # unknown keeps the row


def test_no_mx_column_without_check_mx() -> None:
    assert "mx_ok" not in clean(FRAME).columns


# --- the report ------------------------------------------------------------------------------


def test_clean_report_counts_shares_and_html() -> None:
    frame = pd.DataFrame({"email": ["a@x.com", "A@x.com", "bad", None, "info@x.com"]})
    report = clean_report(clean(frame))
    assert report["count"].to_dict() == {"missing": 1, "no_at_sign": 1, "duplicate": 1, "ok": 2}
    assert report["count"].sum() == 5
    assert report["share"].sum() == pytest.approx(1.0)
    assert report.totals == {"rows": 5, "valid": 3, "sendable": 2, "duplicates": 1,
                             "suppressed": 0, "role": 1, "disposable": 0, "suggestions": 0}
    html = report._repr_html_()
    assert "Clean report" in html and "no_at_sign" in html and "40.0%" in html
    assert "rows: 5" in repr(report) and "20.0%" in repr(report)
    with pytest.raises(InputError, match=r"takes the frame returned by smtpkit\.clean"):
        clean_report(frame)


# --- the sample contact export ----------------------------------------------------------------


def test_sample_contacts_every_row_gets_a_verdict() -> None:
    frame = make_contacts(3000, seed=11)
    out = clean(frame)
    assert len(out) == len(frame) and out.index.equals(frame.index)
    assert out["reason"].notna().all()
    assert (out["reason"] == "control_characters").sum() == 3
    cells = frame["email"]
    blank = cells.isna() | (cells.fillna("").str.strip() == "")
    assert set(out.loc[blank, "reason"]) <= {"blank", "missing"}
    display = cells.fillna("").str.contains("<")
    assert out.loc[display, "valid"].all()
    assert out["duplicate"].sum() >= round(3000 * 0.08)  # at least the planted duplicates
    assert out["role"].sum() >= round(3000 * 0.02)
    assert out["disposable"].sum() >= round(3000 * 0.01)
    assert out["suggestion"].notna().sum() >= round(3000 * 0.015)
    assert np.array_equal(
        out["sendable"].to_numpy(), (out["reason"] == "ok").to_numpy(dtype=bool)
    )


@pytest.mark.parametrize(
    "module", ["smtpkit.clean", "smtpkit.contacts", "smtpkit._clean_flags", "smtpkit.dns"]
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_utf8_bytes_are_not_text_as_for_email_validator() -> None:
    # validate_email(b"...") accepts bytes only when they are ASCII
    row = one("josé@example.com".encode())
    assert row["reason"] == "not_text" and not row["valid"]


def test_plain_addresses_never_reach_email_validator() -> None:
    """The speed design: plain ASCII rows are decided by the vectorized rule alone."""
    from unittest import mock

    import smtpkit._clean_syntax as syntax

    frame = make_contacts(2000, seed=5)
    with mock.patch.object(syntax, "validate_email", wraps=syntax.validate_email) as spy:
        out = clean(frame)
    plain = out["email"].fillna("").str.fullmatch(r"[a-z0-9._+]+@[a-z0-9.-]+\.[a-z]+")
    assert plain.sum() > 1500
    called_with = {call.args[0] for call in spy.call_args_list}
    assert not called_with & set(out.loc[plain, "email"])
    assert spy.call_count < 100  # IDN domains once each, non-ASCII local parts, odd cases


def test_progress_bar_when_many_addresses_need_email_validator(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import smtpkit._clean_syntax as syntax

    monkeypatch.setattr(syntax, "_PROGRESS_DELAY", 0.0)  # this machine may be fast
    frame = pd.DataFrame({"email": [f"josé{i}@example.com" for i in range(20_500)]})
    out = clean(frame)
    assert out["valid"].all() and out["smtputf8"].all()
    assert "Checking addresses" in capsys.readouterr().err


def test_repeated_index_labels_and_multiindex() -> None:
    frame = pd.DataFrame({"email": ["a@x.com", "A@x.com", "b@x.com"]}, index=[5, 5, 1])
    out = clean(frame)
    assert out.index.tolist() == [5, 5, 1]
    assert out["reason"].tolist() == ["ok", "duplicate", "ok"]
    assert out["duplicate_of"].tolist() == [pd.NA, 5, pd.NA]
    multi = frame.set_axis(pd.MultiIndex.from_tuples([("a", 1), ("b", 2), ("c", 3)]))
    assert clean(multi)["duplicate_of"].tolist() == [None, ("a", 1), None]


# --- odd arguments: they work, or a clear error says what to do ---------------------------------


@pytest.mark.parametrize(
    ("frame", "column"),
    [
        pytest.param(pd.DataFrame({0: ["Ann@Example.com"], 1: ["x"]}), 0, id="int-label"),
        pytest.param(pd.DataFrame({2024: ["Ann@Example.com"]}), 2024, id="year-label"),
        pytest.param(pd.DataFrame([["Ann@Example.com", 1]], columns=pd.MultiIndex.from_tuples(
            [("email", ""), ("n", "")])), ("email", ""), id="tuple-label"),
    ],
)
def test_non_string_column_labels_work(frame: pd.DataFrame, column: Any) -> None:
    out = clean(frame, column=column)
    assert out["email_normalized"].tolist() == ["Ann@example.com"]
    assert out["sendable"].tolist() == [True]
    assert out.attrs["smtpkit_email_column"] == column
    assert out[column].tolist() == ["Ann@Example.com"], "the input column is kept as it was"
    labelled = frame.copy()
    labelled.attrs["smtpkit_email_column"] = column  # as load_contacts leaves it
    assert clean(labelled)["valid"].tolist() == [True]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        pytest.param({"column": "email", "frame": pd.DataFrame([["a@x.com"]], columns=pd.MultiIndex
                      .from_tuples([("email", "")]))}, InputError,
                     "The frame's columns have 2 levels, so 'email' names a group of columns; "
                     "pass the whole label of the address column as a tuple, such as "
                     "column=('email', '').", id="multiindex-needs-a-tuple"),
        pytest.param({"column": ["email"]}, MissingColumnError,
                     "The frame has no column ['email']; its columns are 'email'. Pass "
                     "column='...' with the one that holds the email addresses.",
                     id="unhashable-column"),
        pytest.param({"check_mx": True, "resolver": "8.8.8.8"}, ConfigError,
                     "resolver= must be a smtpkit.dns.Resolver, not str ('8.8.8.8'); to ask "
                     "particular name servers, pass resolver=Resolver(backend=DNSPythonBackend("
                     "nameservers=[...])) from smtpkit.dns.", id="resolver-as-a-string"),
        pytest.param({"dedupe": "no"}, ConfigError, "dedupe= must be True or False, not 'no'.",
                     id="dedupe-as-a-string"),
        pytest.param({"check_mx": "yes"}, ConfigError,
                     "check_mx= must be True or False, not 'yes'.", id="check-mx-as-a-string"),
        pytest.param({"allow_smtputf8": None}, ConfigError,
                     "allow_smtputf8= must be True or False, not None.", id="smtputf8-none"),
    ],
)
def test_odd_arguments_raise_a_sentence(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    frame = options.pop("frame", pd.DataFrame({"email": ["a@x.com"]}))
    with pytest.raises(error) as info:
        clean(frame, **options)
    assert str(info.value) == message


def test_suppress_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        clean(FRAME, suppress=tmp_path)
    assert str(info.value) == (
        f"suppress={str(tmp_path)!r} is a folder; pass the path of a CSV or text file of "
        "addresses (one a line), or a list or frame of them."
    )
