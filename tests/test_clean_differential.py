"""clean() against email-validator itself: hypothesis, a seeded fuzzer, and the public corpora.

The claim under test (smtpkit.clean's module docstring): for every cell, ``valid``,
``email_normalized``, ``local``, ``domain``, ``ascii_email`` and ``smtputf8`` are what
``validate_email(extract_address(cell), check_deliverability=False, allow_smtputf8=...)`` gives,
and ``reason_detail`` is its error message. Two documented safety rules come first and are
checked separately: a cell with a control character is invalid (``control_characters``), and
an extracted address over 254 bytes is invalid (``too_long``); in both cases email-validator
must reject it too.
"""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from conftest import corpus
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpkit.clean import _CONTROL_RE, _STRIP, _reason_for, clean, extract_address

FIELDS = ("email_normalized", "local", "domain", "ascii_email", "smtputf8", "valid", "reason",
          "reason_detail")


def reference(cell: str, allow_smtputf8: bool) -> tuple[object, str | None]:
    try:
        info = validate_email(
            extract_address(cell), check_deliverability=False, allow_smtputf8=allow_smtputf8
        )
    except EmailNotValidError as exc:
        return None, str(exc)
    return info, None


def rejects(address: str, allow_smtputf8: bool) -> bool:
    try:
        validate_email(address, check_deliverability=False, allow_smtputf8=allow_smtputf8)
    except EmailNotValidError:
        return True
    return False


def assert_agrees(cells: list[str], *, allow_smtputf8: bool = True) -> dict[str, int]:
    """Clean ``cells`` in one frame and compare every row with email-validator."""
    try:
        column = pd.Series(cells)  # pandas' Arrow-backed str dtype: the usual case
    except UnicodeError:
        column = pd.Series(cells, dtype=object)  # lone surrogates: only object columns hold them
    out = clean(pd.DataFrame({"email": column}), dedupe=False, allow_smtputf8=allow_smtputf8)
    got = {name: out[name].tolist() for name in FIELDS}
    paths: dict[str, int] = {}
    for i, cell in enumerate(cells):
        row = {name: got[name][i] for name in FIELDS}
        stripped = cell.strip(_STRIP)
        reason = row["reason"]
        paths[reason] = paths.get(reason, 0) + 1
        if _CONTROL_RE.search(stripped):
            assert reason == "control_characters" and row["valid"] is False, (cell, row)
            assert rejects(stripped, allow_smtputf8), cell
            continue
        if not stripped:
            assert reason == "blank" and row["valid"] is False, (cell, row)
            continue
        address = extract_address(cell)
        if len(address.encode("utf-8", "surrogatepass")) > 254:
            assert reason == "too_long" and row["valid"] is False, (cell, row)
            assert rejects(address, allow_smtputf8), cell
            continue
        info, error = reference(cell, allow_smtputf8)
        if info is None:
            assert row["valid"] is False, (cell, row)
            assert row["reason_detail"] == error, (cell, row, error)
            assert reason == _reason_for(error, address), (cell, row)
            assert row["email_normalized"] is pd.NA
            continue
        expected = {
            "email_normalized": info.normalized,
            "local": info.local_part,
            "domain": info.domain,
            "ascii_email": info.ascii_email if info.ascii_email is not None else pd.NA,
            "smtputf8": info.smtputf8,
            "valid": True,
            "reason": "ok",
            "reason_detail": pd.NA,
        }
        assert row == expected, (cell, row, expected)
    return paths


# --- hypothesis -----------------------------------------------------------------------------

_ATEXT = "abcxyzABCXYZ0189!#$%&'*+-/=?^_`{|}~"
_ODD = '.@"<>\\ ()[],;:' + "üéßİ例\u0301\u0338\u200b\u200d\u202e\u2028\t\r\n\x00\x7f\xa0＠．ﬁ"
_LABELS = ["xn--bcher-kva", "xn--nxasmq6b", "xn--", "XN--BCHER-KVA", "bücher", "例え", "ab--cd",
           "localhost", "local", "test", "invalid", "onion", "arpa", "com", "co", "de", "123",
           "a" * 63, "a" * 64, "ｅｘａｍｐｌｅ", "-a", "a-", "Σ", "ⅷ", "a\u0301", "١٢٣", "א"]

labels = st.one_of(
    st.text(alphabet="abcxyzABC019-", min_size=0, max_size=12),
    st.sampled_from(_LABELS),
)
domains = st.one_of(
    st.lists(labels, min_size=0, max_size=5).map(".".join),
    st.text(alphabet="abc.-üＡ。[]:1", max_size=15),
)
locals_ = st.one_of(
    st.text(alphabet=_ATEXT + ".", min_size=0, max_size=20),
    st.text(alphabet=_ATEXT + _ODD, min_size=0, max_size=12),
    st.sampled_from(["info", "INFO", "Postmaster", "josé", "用户", "ñandú", "a" * 64, '"a b"',
                     '"a\\"b"', "zoë", "e\u0301", "ﬁ", "a..b", ".a", "a."]),
)
separators = st.sampled_from(["@", "@", "@", "@", "@@", "", "＠", "﹫", " @"])
addresses = st.builds(lambda lo, sep, do: lo + sep + do, locals_, separators, domains)
cells = st.one_of(
    addresses,
    addresses.map(lambda a: f"  {a}\t"),
    addresses.map(lambda a: f"Jane Doe <{a}>"),
    addresses.map(lambda a: f'"{a}"'),
    addresses.map(lambda a: f"mailto:{a}"),
    addresses.map(lambda a: f"MAILTO: <{a}>"),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cells, min_size=1, max_size=25))
def test_clean_agrees_with_email_validator(batch: list[str]) -> None:
    assert_agrees(batch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cells, min_size=1, max_size=25))
def test_clean_agrees_with_email_validator_without_smtputf8(batch: list[str]) -> None:
    assert_agrees(batch, allow_smtputf8=False)


# --- a seeded mutation fuzzer (many rows through the vectorized path at once) ---------------

_SEEDS = ["jane.doe@example.com", "Info@Acme-Logistics.co.uk", "a@b.co", "x_y+tag@sub.domain.org",
          "josé@example.com", "jane@bücher.example.de", "bob@xn--bcher-kva.example",
          "postmaster@mail.example.io", "q@1.2.3.4.com", "user@[192.168.0.1]",
          "printer@office.LOCAL", "dev@ci.test", "x@hidden.onion", "root@localhost", "lost@"]
_MUTATION_CHARS = list(_ATEXT + _ODD + "..--@@")


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(0, 3)):
        op = rng.random()
        i = rng.randint(0, len(text))
        if op < 0.3:
            text = text[:i] + rng.choice(_MUTATION_CHARS) + text[i:]
        elif op < 0.5 and text:
            text = text[:i] + text[i + 1 :]
        elif op < 0.6:
            text = text.upper() if rng.random() < 0.5 else text.lower()
        elif op < 0.7:  # a long label or local part, near the limits
            text = text[:i] + "a" * rng.choice([50, 61, 62, 63, 64, 120]) + text[i:]
        elif op < 0.8:  # pad the local part to land around 254 bytes
            local, at, domain = text.partition("@")
            pad = max(0, rng.choice([252, 253, 254, 255, 256]) - len(text.encode()))
            text = local + "x" * pad + at + domain
        else:
            text = text[:i] + rng.choice([".", "-", "--", "..", "xn--"]) + text[i:]
    return text


def test_seeded_fuzz_of_ten_thousand_cells() -> None:
    rng = random.Random(4)
    batch = [_mutate(rng, rng.choice(_SEEDS)) for _ in range(10_000)]
    paths = assert_agrees(batch)
    # The fuzzer must reach the interesting outcomes, or it proves little.
    for reason in ("ok", "invalid_local", "invalid_domain", "too_long", "reserved_domain",
                   "empty_local", "empty_domain", "no_at_sign", "domain_literal"):
        assert paths.get(reason, 0) > 0, (reason, paths)


def test_fast_path_lengths_at_the_limits() -> None:
    batch = []
    for total in (253, 254, 255):
        for domain in ("example.com", "b.co", "x" * 63 + ".com"):
            local = "a" * (total - len(domain) - 1)
            batch += [f"{local}@{domain}", f"{local[:63]}@{domain}"]
    batch += ["a@" + ".".join(["b" * 63] * 4), "a@" + ".".join(["b" * 63] * 3) + ".c" * 31,
              "a@" + "b" * 64 + ".com", "a@" + "b" * 63 + ".com"]
    assert_agrees(batch)


# --- the public corpora ---------------------------------------------------------------------


def _jsonl(path: object) -> list[dict[str, object]]:
    with open(str(path), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _corpus_inputs(rows: list[dict[str, object]]) -> list[str]:
    inputs: list[str] = []
    for row in rows:
        if isinstance(row.get("email_input"), str):
            inputs.append(str(row["email_input"]))
        if isinstance(row.get("s"), str):
            inputs += [f"{row['s']}@test.example", f"test@{row['s']}", f"a{row['s']}b@x.com"]
    return inputs


def test_email_validator_corpus_differential() -> None:
    rows = _jsonl(corpus("email-validator") / "syntax_cases.jsonl")
    inputs = _corpus_inputs(rows)
    assert len(inputs) > 250
    assert_agrees(inputs)
    assert_agrees(inputs, allow_smtputf8=False)


@pytest.mark.parametrize("allow_smtputf8", [True, False], ids=["smtputf8", "ascii-only"])
def test_email_validator_corpus_expected_answers(allow_smtputf8: bool) -> None:
    """Where a table ran with options equal to clean's, clean must give the table's answer."""
    rows = _jsonl(corpus("email-validator") / "syntax_cases.jsonl")
    checked = 0
    cases = [r for r in rows if isinstance(r.get("email_input"), str)]
    column = pd.Series([r["email_input"] for r in cases], dtype=object)
    out = clean(pd.DataFrame({"email": column}), dedupe=False, allow_smtputf8=allow_smtputf8)
    for row, valid, normalized in zip(cases, out["valid"], out["email_normalized"], strict=True):
        text = str(row["email_input"])
        if extract_address(text) != text.strip(_STRIP):
            continue  # clean takes display names / quotes apart on purpose
        test = row["test"]
        if test in ("test_email_invalid_syntax", "test_email_invalid_reserved_domain",
                    "test_email_valid_only_if_quoted_local_part"):
            assert not valid, text
            checked += 1
        elif test == "test_email_invalid_syntax_strict":
            # valid unless strict=True (or the local part is not ASCII and SMTPUTF8 is off)
            assert valid == (allow_smtputf8 or text.partition("@")[0].isascii()), text
            checked += 1
        elif test == "test_email_valid" and '"' not in text:
            expected = row["output"]
            assert isinstance(expected, dict)
            if expected.get("smtputf8") and not allow_smtputf8:
                assert not valid, text
            else:
                assert valid and normalized == expected["normalized"], text
            checked += 1
        elif test == "test_email_valid_intl_local_part":
            assert valid == allow_smtputf8, text
            if valid:
                assert normalized == row["output"]["normalized"], text  # type: ignore[index]
            checked += 1
    assert checked >= 100


def test_isemail_corpus() -> None:
    rows = _jsonl(corpus("isemail") / "tests.jsonl")
    inputs = [str(r["address"]) for r in rows]
    assert_agrees(inputs)
    out = clean(pd.DataFrame({"email": inputs}), dedupe=False)
    compared = 0
    for row, valid in zip(rows, out["valid"], strict=True):
        text = str(row["address"])
        if extract_address(text) != text:
            continue
        assert valid == (row["observed_email_validator_2_4_0_defaults"] == "accept"), text
        compared += 1
        if row["category"] == "ISEMAIL_ERR":
            assert not valid, text  # never accept what is_email calls invalid for any purpose
    assert compared > 140


def test_isemail_original_corpus() -> None:
    rows = _jsonl(corpus("isemail") / "tests-original.jsonl")
    assert_agrees([str(r["address"]) for r in rows])
