"""Targeting operators, one by one, their invalid forms, and the columnar evaluation used by batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from splitlab.assignment import (
    OPERATORS,
    Condition,
    Targeting,
    compile_condition,
    compile_targeting,
    matches,
    version_key,
)

MISSING = object()


def holds(operator: str, value: object, attribute: object) -> bool:
    rule = compile_condition(Condition("a", operator, value))
    return rule(None if attribute is MISSING else attribute)


@pytest.mark.parametrize(
    ("value", "attribute", "expected"),
    [
        ("US", "US", True), ("US", "us", False), ("US", "USA", False),
        (42, 42, True), (42, 42.0, True), (42, "42", True), ("42", 42, True), ("42", "42.0", False),
        (42, "42.5", False), (True, True, True), (True, "true", True), (True, "TRUE", True), ("true", True, True),
        (True, 1, False), (1, True, False), (False, 0, False), (0.1, 0.1, True), (42, None, False),
        (42, float("nan"), False), ("US", ["US"], False), (42, MISSING, False),
    ],
)  # fmt: skip
def test_eq(value: object, attribute: object, expected: bool) -> None:
    assert holds("eq", value, attribute) is expected


@pytest.mark.parametrize(
    ("value", "attribute", "expected"),
    [
        ("US", "FR", True),
        ("US", "US", False),
        (3, "3", False),
        (3, 4, True),
        ("US", MISSING, False),
        ("US", None, False),
    ],
)
def test_ne_never_matches_a_missing_attribute(value: object, attribute: object, expected: bool) -> None:
    assert holds("ne", value, attribute) is expected


def test_in_and_not_in() -> None:
    countries = ["US", "CA", "GB"]
    assert holds("in", countries, "CA")
    assert not holds("in", countries, "FR")
    assert not holds("in", countries, MISSING)
    assert holds("in", [1, 2, 3], "2")
    assert holds("in", ["1", "2"], 2)
    assert holds("in", (True,), "True")
    assert not holds("in", [], "US")
    assert holds("not_in", countries, "FR")
    assert not holds("not_in", countries, "US")
    assert not holds("not_in", countries, MISSING)
    assert holds("not_in", [], "US")


@pytest.mark.parametrize(
    ("operator", "value", "attribute", "expected"),
    [
        ("gt", 5, 8, True), ("gt", 5, 5, False), ("gte", 5, 5, True), ("lt", 10, "8", True), ("lte", 10, 10.0, True),
        ("gt", "5", 8, True), ("lt", "10", "9", True),  # both parse: numeric, not lexicographic ("9" > "10")
        ("gt", "1e3", "999.5", False), ("gte", "-.5", "-0.5", True), ("lt", 0, -1e-9, True),
        ("gt", "alphabet", "always", True), ("lt", "zebra", "always", True), ("gt", "alphabet", "AZL", False),
        ("gte", "2024-05-01", "2024-05-17", True), ("lt", "2024-05-01", "2024-04-30", True),
        ("gt", 5, "abc", False), ("gt", "abc", 8, False), ("gt", 0, True, False), ("gt", 5, MISSING, False),
        ("lt", 5, None, False), ("lt", 5, float("nan"), False), ("gt", 5, "inf", False), ("lt", 5, " 3", False),
        ("gt", 5, np.int64(8), True), ("lt", 5.5, np.float32(2.0), True),
    ],
)  # fmt: skip
def test_order_operators(operator: str, value: object, attribute: object, expected: bool) -> None:
    assert holds(operator, value, attribute) is expected


def test_regex() -> None:
    assert holds("regex", "(Mobile|Tablet)", "Android Mobile Browser")
    assert not holds("regex", "(Mobile|Tablet)", "Chrome Desktop Browser")
    assert holds("regex", "-12-25$", "1980-12-25")  # re.search, not re.match
    assert not holds("regex", "^12", 1234)
    assert not holds("regex", ".*", MISSING)


@pytest.mark.parametrize(
    ("operator", "value", "attribute", "expected"),
    [
        ("version_gt", "1.9", "1.10.2", True), ("version_gt", "1.9.9", "1.10", True),
        ("version_lt", "1.10", "1.9.99", True),
        ("version_eq", "1.9", "1.9.0", True), ("version_eq", "1.2.3", "v1.2.3+build.7", True),
        ("version_lt", "2.0.0", "2.0.0-rc.1", True), ("version_gt", "2.0.0-rc.1", "2.0.0-rc.2", True),
        ("version_gt", "1.0.0-alpha", "1.0.0-alpha.1", True), ("version_gt", "1.0.0-alpha.1", "1.0.0-alpha.beta", True),
        ("version_gt", "1.0.0-beta.2", "1.0.0-beta.11", True), ("version_lt", "1.0.0-beta", "1.0.0-alpha", True),
        ("version_gt", "1.0.0-beta", "1.0.0-alpha", False),
        ("version_gte", "2.1.0", "2.1", True), ("version_lte", "2.1.0", "2.0.9", True),
        ("version_gte", 2, "2.0.1", True), ("version_gte", "2.1.0", 3, True), ("version_gte", "1.5", 1.5, True),
        ("version_gt", "1.0", "latest", False), ("version_gt", "1.0", "", False), ("version_gt", "1.0", MISSING, False),
        ("version_eq", "10.0.0", "9.0.0", False),
        ("version_gt", "9999.0.0", "10000.0.0", True),
    ],
)  # fmt: skip
def test_version_operators(operator: str, value: object, attribute: object, expected: bool) -> None:
    assert holds(operator, value, attribute) is expected


def test_semver_precedence_example_is_a_total_order() -> None:
    # SemVer 2.0.0 §11.4 example, in increasing order
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
               "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1", "1.10.0", "2.0.0-0", "2.0.0"]  # fmt: skip
    keys = [version_key(v) for v in ordered]
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)


def test_exists() -> None:
    assert holds("exists", None, "x")
    assert holds("exists", True, 0)
    assert not holds("exists", True, MISSING)
    assert not holds("exists", True, float("nan"))
    assert holds("exists", False, MISSING)
    assert not holds("exists", False, "x")


def test_every_operator_is_covered_here() -> None:
    tested = {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "regex", "exists"}
    tested |= {f"version_{op}" for op in ("eq", "gt", "gte", "lt", "lte")}
    assert tested == set(OPERATORS)


# --- include / exclude --------------------------------------------------------------------------

RULE = Targeting(
    include=(Condition("country", "in", ["US", "CA"]), Condition("app_version", "version_gte", "2.1")),
    exclude=(Condition("account", "in", ["vip", "employee"]), Condition("email", "regex", r"@example\.com$")),
)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"country": "US", "app_version": "2.1.0"}, True),
        ({"country": "US", "app_version": "2.0.9"}, False),
        ({"country": "FR", "app_version": "3.0"}, False),
        ({"app_version": "3.0"}, False),  # missing include attribute
        ({"country": "CA", "app_version": "3.0", "account": "vip"}, False),
        ({"country": "CA", "app_version": "3.0", "account": "standard"}, True),
        ({"country": "CA", "app_version": "3.0", "email": "ann@example.com"}, False),
        ({"country": "CA", "app_version": "3.0", "email": "ann@example.org"}, True),
        ({"country": "CA", "app_version": "3.0", "account": None}, True),  # a missing exclude attribute excludes nobody
    ],
)
def test_include_and_exclude(attributes: dict[str, Any], expected: bool) -> None:
    assert compile_targeting(RULE)(attributes) is expected
    assert matches(RULE, attributes) is expected


def test_empty_targeting_admits_everyone() -> None:
    rule = compile_targeting(Targeting())
    assert not rule
    assert rule({})


# --- invalid rules raise at compile time --------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (Condition("a", "equals", 1), "operator == 'equals'"),
        (Condition("a", "$in", ["x"]), r"operator == '\$in'"),
        (Condition("", "eq", 1), "attribute == ''"),
        (Condition("a", "in", "US"), "must be a list"),
        (Condition("a", "not_in", {"x": 1}), "must be a list"),
        (Condition("a", "in", [["nested"]]), r"value\[\] =="),
        (Condition("a", "eq", None), "value == None"),
        (Condition("a", "eq", float("nan")), "value == nan"),
        (Condition("a", "gt", True), "value == True"),
        (Condition("a", "gt", [1]), "must be a finite number or a string"),
        (Condition("a", "regex", "(unclosed"), "not a valid regular expression"),
        (Condition("a", "regex", 5), "must be a regular expression string"),
        (Condition("a", "version_gte", "latest"), "must be a version"),
        (Condition("a", "version_lt", None), "must be a version"),
        (Condition("a", "exists", "yes"), "must be true, false or omitted"),
    ],
)
def test_invalid_conditions_raise_when_compiled(condition: Condition, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_condition(condition)


def test_the_error_names_the_rule() -> None:
    with pytest.raises(ValueError, match=r"targeting\.exclude\[1\]\.operator == 'like'"):
        compile_targeting(Targeting(exclude=(Condition("a", "eq", 1), Condition("b", "like", "x%"))))


# --- columns (batch path) equal rows (scalar path) ----------------------------------------------


def test_columnar_evaluation_equals_the_scalar_rule() -> None:
    rng = np.random.default_rng(2)
    n = 5_000
    country = rng.choice(["US", "CA", "FR", "GB"], n)
    version = rng.choice(["2.0.9", "2.1", "2.10.1", "3.0.0-rc.1", "latest"], n)
    account = rng.choice(np.array(["vip", "standard", None], dtype=object), n)
    email = rng.choice(["a@example.com", "b@example.org"], n)
    flag = rng.choice(np.array([True, 1, 1.0, False, 0, "1"], dtype=object), n)
    rule = compile_targeting(Targeting(include=(*RULE.include, Condition("flag", "eq", True)), exclude=RULE.exclude))
    columns = {
        "country": country,  # numpy str array: factorised with np.unique
        "app_version": version.tolist(),  # list of str: set + dictionary
        "account": account,  # object array with None
        "email": email.astype(object),
        "flag": flag,  # True, 1 and 1.0 mixed: no memoisation shortcut
    }
    got = rule.evaluate_columns(columns, n)
    rows = [{k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in columns.items()} for i in range(n)]
    expected = np.array([rule(r) for r in rows])
    assert np.array_equal(got, expected)
    assert 0 < got.sum() < n


def test_columnar_evaluation_of_an_absent_column_treats_it_as_missing() -> None:
    rule = compile_targeting(Targeting(include=(Condition("country", "exists"),), exclude=(Condition("x", "eq", 1),)))
    assert not rule.evaluate_columns({}, 3).any()
    rule = compile_targeting(Targeting(include=(Condition("country", "exists", False),)))
    assert rule.evaluate_columns({}, 3).all()
