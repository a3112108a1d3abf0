"""segment.py: segments from a column, from rules, from seeded splits; ordered batches."""

from __future__ import annotations

import pandas as pd
import pytest

from smtpkit.errors import ConfigError, InputError, MissingColumnError
from smtpkit.segment import batches, segment


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "email": ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"],
        "plan": ["enterprise", "free", "pro", None, "enterprise"],
        "country": ["DE", "FR", "DE", "US", "US"],
        "score": [90, 10, 55, 70, 20],
    })


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"by": "country"}, ["DE", "FR", "DE", "US", "US"], id="by-column"),
        pytest.param({"by": "plan"}, ["enterprise", "free", "pro", "other", "enterprise"],
                     id="by-column-missing-is-other"),
        pytest.param({"rules": {"vip": "plan == 'enterprise'", "paying": "plan == 'pro'"}},
                     ["vip", "other", "paying", "other", "vip"], id="rules"),
        pytest.param({"rules": {"germany": "country == 'DE'", "high": "score > 50"}},
                     ["germany", "other", "germany", "high", "other"], id="first-rule-wins"),
        pytest.param({"rules": {"us-low": "country == 'US' and score < 50"}},
                     ["other", "other", "other", "other", "us-low"], id="compound-rule"),
    ],
)
def test_segment_labels(frame: pd.DataFrame, options: dict[str, object],
                        expected: list[str]) -> None:
    result = segment(frame, **options)  # type: ignore[arg-type]
    assert result["segment"].tolist() == expected
    assert str(result["segment"].dtype) == "string"
    assert "segment" not in frame.columns  # the input is not touched
    pd.testing.assert_frame_equal(result.drop(columns="segment"), frame)


def test_split_is_seeded_stable_per_address_and_balanced() -> None:
    emails = [f"user{i}@example.com" for i in range(4000)]
    frame = pd.DataFrame({"email": emails})
    arms = segment(frame, split={"A": 0.5, "B": 0.5}, seed=11)["segment"]
    assert set(arms) == {"A", "B"}
    assert 1800 < (arms == "A").sum() < 2200
    # the same address lands in the same arm whatever the order, case or other rows
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = segment(shuffled, split={"A": 0.5, "B": 0.5}, seed=11)["segment"]
    assert again.sort_index().tolist() == arms.tolist()
    upper = segment(pd.DataFrame({"email": [e.upper() for e in emails[:50]]}),
                    split={"A": 0.5, "B": 0.5}, seed=11)["segment"]
    assert upper.tolist() == arms.tolist()[:50]
    # another seed gives another assignment
    other = segment(frame, split={"A": 0.5, "B": 0.5}, seed=12)["segment"]
    assert (other != arms).sum() > 1000


def test_split_shares_below_one_leave_the_rest_as_other() -> None:
    frame = pd.DataFrame({"email": [f"u{i}@example.com" for i in range(2000)]})
    arms = segment(frame, split={"test": 0.1}, seed=0)["segment"]
    assert set(arms) == {"test", "other"}
    assert 120 < (arms == "test").sum() < 280


def test_split_prefers_the_normalized_address() -> None:
    frame = pd.DataFrame({"email": ["X <a@x.com>", "junk"],
                          "email_normalized": ["a@x.com", "b@x.com"]})
    plain = pd.DataFrame({"email": ["a@x.com", "b@x.com"]})
    assert segment(frame, split={"A": 0.5, "B": 0.5})["segment"].tolist() == \
        segment(plain, split={"A": 0.5, "B": 0.5})["segment"].tolist()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        pytest.param({}, ConfigError, "segment() needs exactly one of by=, rules= or split=; got "
                     "none.", id="nothing"),
        pytest.param({"by": "plan", "split": {"A": 1.0}}, ConfigError,
                     "segment() needs exactly one of by=, rules= or split=; got by and split.",
                     id="two-ways"),
        pytest.param({"by": "tier"}, MissingColumnError, "segment(by='tier'): there is no such "
                     "column; the frame has email, plan, country, score.", id="no-column"),
        pytest.param({"split": {"A": 0.7, "B": 0.5}}, ConfigError,
                     "The split shares add up to 1.2; they may add up to 1 at most.",
                     id="shares-over-one"),
        pytest.param({"split": {"A": -1}}, ConfigError,
                     "The share of arm 'A' must be a number above 0, not -1.", id="negative"),
        pytest.param({"rules": {"vip": "plan === 'x'"}}, InputError,
                     "The condition of segment 'vip' (\"plan === 'x'\") cannot be evaluated",
                     id="bad-rule-syntax"),
        pytest.param({"rules": {"vip": "score + 1"}}, InputError,
                     "The condition of segment 'vip' ('score + 1') does not give True/False per "
                     "row; compare a column with a value, e.g. \"plan == 'enterprise'\".",
                     id="rule-not-boolean"),
        pytest.param({"rules": {"vip": "tier == 'a'"}}, InputError,
                     "The condition of segment 'vip' (\"tier == 'a'\") cannot be evaluated",
                     id="rule-unknown-column"),
    ],
)
def test_segment_errors(frame: pd.DataFrame, options: dict[str, object], error: type[Exception],
                        message: str) -> None:
    with pytest.raises(error) as caught:
        segment(frame, **options)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_segment_needs_a_frame() -> None:
    with pytest.raises(InputError, match="segment\\(\\) takes a DataFrame, not list"):
        segment([1, 2], by="x")  # type: ignore[arg-type]


def test_batches_in_order() -> None:
    frame = pd.DataFrame({"email": [f"u{i}@x.com" for i in range(7)]})
    sizes = [len(b) for b in batches(frame, 3)]
    assert sizes == [3, 3, 1]
    assert pd.concat(batches(frame, 3)).equals(frame)


def test_batches_by_segment_never_mix_and_keep_first_appearance_order() -> None:
    frame = pd.DataFrame({"email": list("abcdefg"), "segment": list("BABCABB")})
    parts = batches(frame, 2, by="segment")
    assert [p["segment"].tolist() for p in parts] == [
        ["B", "B"], ["B", "B"], ["A", "A"], ["C"]]
    assert parts[0].index.tolist() == [0, 2]


def test_batches_follow_category_order() -> None:
    frame = pd.DataFrame({"email": list("abcd"),
                          "segment": pd.Categorical(list("xyxy"), categories=["y", "x"])})
    assert [p["email"].tolist() for p in batches(frame, 5, by="segment")] == [
        ["b", "d"], ["a", "c"]]


@pytest.mark.parametrize(
    ("size", "message"),
    [
        pytest.param(0, "The batch size must be a whole number of rows above 0, not 0.", id="zero"),
        pytest.param(2.5, "The batch size must be a whole number of rows above 0, not 2.5.",
                     id="float"),
    ],
)
def test_batches_bad_size(size: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        batches(pd.DataFrame({"email": ["a@x.com"]}), size)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_accessor_matches_the_functions(frame: pd.DataFrame) -> None:
    import smtpkit  # noqa: F401  (registers df.smtpkit)

    via = frame.smtpkit.segment(rules={"vip": "plan == 'enterprise'"})
    assert via["segment"].tolist() == segment(frame, rules={"vip": "plan == 'enterprise'"})[
        "segment"].tolist()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda f: segment(f, by="plan"), id="segment-by"),
        pytest.param(lambda f: segment(f, rules={"v": "plan == 'p'"}), id="segment-rules"),
        pytest.param(lambda f: segment(f, split={"A": 0.5}), id="segment-split"),
        pytest.param(lambda f: batches(f, 1, by="plan"), id="batches-by"),
    ],
)
def test_duplicated_column_names_are_a_clear_error(call: object) -> None:
    frame = pd.DataFrame([["a@x.com", "p", "q"]], columns=["email", "plan", "plan"])
    with pytest.raises(InputError) as caught:
        call(frame)  # type: ignore[operator]
    assert str(caught.value).startswith("The frame has more than one column named 'plan', so it")
