"""Targeting: does a unit's attributes mapping satisfy an experiment's include / exclude rules?

A :class:`~splitlab.assignment.config.Targeting` is compiled once (:func:`compile_targeting`) into
one small predicate per condition; operators, values and regular expressions are checked and
prepared then, so a bad rule raises ``ValueError`` at plan-compile time, never per call.

Semantics (the attribute value is ``a``, the condition value ``v``):

- **Missing.** An attribute that is absent, ``None`` or a float NaN is missing. A missing attribute
  satisfies no condition except ``exists`` with ``v`` false. So it never matches an include rule, and
  never triggers an exclude rule (``ne`` and ``not_in`` included).
- **eq / ne / in / not_in** (``in`` takes a list; ``eq`` is ``in`` with one value). Two strings are
  equal only when identical (case-sensitive). A string and a number are equal when the string parses
  as that number (``"42"`` eq ``42``; numbers per the rule below). Numbers compare by value
  (``1`` eq ``1.0``). Booleans equal booleans, and the strings ``"true"`` / ``"false"`` in any case
  (attributes arriving as text from a command line or URL). Other attribute types match nothing.
- **gt / gte / lt / lte.** When both sides are numbers, or strings that parse as decimal numbers
  (``[+-]digits[.digits][e[+-]digits]``, no spaces, no ``inf``/``nan``), they compare numerically;
  when both are strings and either does not parse, they compare lexicographically by code point
  (ISO dates order correctly); anything else (a boolean, a number against a non-numeric string)
  does not match.
- **regex.** ``re.search(v, a)`` on string attributes; the pattern is compiled once. Non-strings
  do not match.
- **version_eq / _gt / _gte / _lt / _lte.** Semantic-version-like comparison, see :func:`version_key`:
  ``"1.10.2" > "1.9"``, ``"1.9" == "1.9.0"``, ``"2.0.0-rc.1" < "2.0.0"``. An attribute that is not a
  version does not match; a condition value that is not a version raises at compile time.
- **exists.** ``v`` true or omitted: the attribute is present; ``v`` false: it is missing.

Attribute names are flat keys of the mapping (no dotted paths).
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from splitlab.assignment.config import OPERATORS, Condition, Targeting
from splitlab.assignment.hashing import js_number_string

Predicate = Callable[[Any], bool]
VersionKey = tuple[tuple[int, ...], tuple[Any, ...]]

_NUMBER_RE: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_VERSION_RE: Final = re.compile(
    r"[vV]?(?P<core>[0-9]+(?:\.[0-9]+)*)(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]*)?"
)
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_BOOL_WORDS: Final = {"true": True, "false": False}
_MEMO_SIZE: Final = 4096


def _is_missing(a: Any) -> bool:
    return a is None or (type(a) is float and math.isnan(a))


def _number(a: Any) -> float | None:
    """A finite float for numbers and decimal strings; None otherwise (booleans included)."""
    t = type(a)
    if t is float:
        return a if math.isfinite(a) else None
    if t is int:
        try:
            return float(a)
        except OverflowError:
            return None
    if isinstance(a, str):
        if _NUMBER_RE.fullmatch(a) is None:
            return None
        x = float(a)
        return x if math.isfinite(x) else None
    if isinstance(a, bool) or not isinstance(a, numbers.Real):
        return None
    try:  # numpy scalars and other Real numbers
        x = float(a)
    except (OverflowError, TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@lru_cache(maxsize=4096)
def _version_key_of_text(text: str) -> VersionKey | None:
    match = _VERSION_RE.fullmatch(text)
    if match is None:
        return None
    core = [int(part) for part in match.group("core").split(".")]
    while core and core[-1] == 0:
        core.pop()
    pre = match.group("pre")
    if pre is None:
        return tuple(core), (1,)
    identifiers = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return tuple(core), (0, identifiers)


def version_key(value: Any) -> VersionKey | None:
    """A sort key for a version string, or None when ``value`` is not a version.

    Accepted: an optional ``v``, one or more dot-separated non-negative integers, an optional
    pre-release ``-id.id...`` (ids of ``[0-9A-Za-z-]``) and optional build metadata ``+...``; integers
    and floats are read through their JS string form (``2`` is ``"2"``). Ordering follows SemVer 2.0.0
    §11 with any number of core components: cores compare numerically component by component, missing
    trailing components count as 0 (``1.9 == 1.9.0``); a pre-release sorts before its release
    (``1.0.0-rc.1 < 1.0.0``); pre-release ids compare numerically when both are digits, else by code
    point, digits before letters, and a longer list of equal leading ids sorts after
    (``1.0.0-a < 1.0.0-a.1``); build metadata is ignored.

    >>> version_key("1.10.2") > version_key("1.9")
    True
    >>> version_key("2.0.0-rc.1") < version_key("2.0.0"), version_key("1.9") == version_key("v1.9.0+build")
    (True, True)
    >>> version_key("latest") is None
    True

    References:
        Preston-Werner, T. Semantic Versioning 2.0.0, §9-§11. https://semver.org/
    """
    if isinstance(value, str):
        return _version_key_of_text(value)
    if isinstance(value, bool) or _number(value) is None:
        return None
    return _version_key_of_text(js_number_string(value))


def _equality_predicate(values: Iterable[Any], where: str) -> Predicate:
    strs: set[str] = set()
    nums: set[float] = set()
    str_nums: set[float] = set()
    bools: set[bool] = set()
    str_bools: set[bool] = set()
    for v in values:
        if isinstance(v, bool):
            bools.add(v)
        elif isinstance(v, str):
            strs.add(v)
            n = _number(v)
            if n is not None:
                str_nums.add(n)
            b = _BOOL_WORDS.get(v.lower())
            if b is not None:
                str_bools.add(b)
        elif _number(v) is not None:
            nums.add(_number(v))  # type: ignore[arg-type]  # just checked
        else:
            raise ValueError(f"{where} == {v!r}, must be a string, a finite number or a boolean")

    def predicate(a: Any) -> bool:
        if isinstance(a, str):
            if a in strs:
                return True
            if nums:
                n = _number(a)
                if n is not None and n in nums:
                    return True
            return bool(bools) and _BOOL_WORDS.get(a.lower()) in bools
        if a is True or a is False:
            return a in bools or a in str_bools
        n = _number(a)
        return n is not None and (n in nums or n in str_nums)

    return predicate


def _order_predicate(op: str, v: Any, where: str) -> Predicate:
    if isinstance(v, bool) or not (isinstance(v, str) or _number(v) is not None):
        raise ValueError(f"{where} == {v!r}, must be a finite number or a string for {op!r}")
    compare = _ORDER[op]
    v_number = _number(v)
    v_text = v if isinstance(v, str) else None

    def predicate(a: Any) -> bool:
        if v_number is not None:
            n = _number(a)
            if n is not None:
                return compare(n, v_number)
        if v_text is not None and isinstance(a, str):
            return compare(a, v_text)
        return False

    return predicate


def _version_predicate(op: str, v: Any, where: str) -> Predicate:
    target = version_key(v)
    if target is None:
        raise ValueError(f"{where} == {v!r}, must be a version such as '1.10.2' for {op!r}")
    compare = {"version_eq": operator.eq, **{f"version_{k}": f for k, f in _ORDER.items()}}[op]

    def predicate(a: Any) -> bool:
        key = version_key(a)
        return key is not None and compare(key, target)

    return predicate


def _memoised(predicate: Predicate) -> Predicate:
    """Remember results for string values (attributes repeat: countries, versions, user agents)."""
    memo: dict[str, bool] = {}

    def remembered(a: Any) -> bool:
        if type(a) is str:
            result = memo.get(a)
            if result is None:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                result = memo[a] = predicate(a)
            return result
        return predicate(a)

    return remembered


@lru_cache(maxsize=1024)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def compile_condition(condition: Condition, *, where: str = "condition") -> Predicate:
    """One condition as a predicate on the attribute's value (``None`` when missing).

    ``where`` names the condition in error messages (e.g. ``"targeting.include[0]"``).

    >>> adult = compile_condition(Condition("age", "gte", 18))
    >>> adult(21), adult("17"), adult(None)
    (True, False, False)

    Raises:
        ValueError: unknown operator, or a value the operator cannot use.
    """
    op, v = condition.operator, condition.value
    if not isinstance(condition.attribute, str) or not condition.attribute:
        raise ValueError(f"{where}.attribute == {condition.attribute!r}, must be a non-empty string")
    if op not in OPERATORS:
        raise ValueError(f"{where}.operator == {op!r}, must be one of {OPERATORS}")
    if op == "exists":
        if v is not None and not isinstance(v, bool):
            raise ValueError(f"{where}.value == {v!r}, must be true, false or omitted for 'exists'")
        if v is False:
            return _is_missing
        return lambda a: not _is_missing(a)
    if op in ("in", "not_in"):
        if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, (Sequence, set, frozenset)):
            raise ValueError(f"{where}.value == {v!r}, must be a list for {op!r}")
        matcher = _equality_predicate(v, f"{where}.value[]")
    elif op in ("eq", "ne"):
        matcher = _equality_predicate([v], f"{where}.value")
    elif op in _ORDER:
        matcher = _memoised(_order_predicate(op, v, f"{where}.value"))
    elif op == "regex":
        if not isinstance(v, str):
            raise ValueError(f"{where}.value == {v!r}, must be a regular expression string for 'regex'")
        try:
            pattern = _compile_regex(v)
        except re.error as error:
            raise ValueError(f"{where}.value == {v!r}, not a valid regular expression: {error}") from None
        return _memoised(lambda a: isinstance(a, str) and pattern.search(a) is not None)
    else:
        matcher = _memoised(_version_predicate(op, v, f"{where}.value"))
    if op in ("ne", "not_in"):
        return lambda a: not _is_missing(a) and not matcher(a)
    return matcher  # false on a missing value already: None and NaN are neither strings nor numbers


class CompiledTargeting:
    """A compiled :class:`Targeting`: call it on an attributes mapping to get eligibility."""

    __slots__ = ("attributes", "check", "exclude", "include")

    def __init__(self, targeting: Targeting) -> None:
        """Compile every condition (raises ``ValueError`` naming the bad one)."""
        self.include: tuple[tuple[str, Predicate], ...] = tuple(
            (c.attribute, compile_condition(c, where=f"targeting.include[{i}]"))
            for i, c in enumerate(targeting.include)
        )
        self.exclude: tuple[tuple[str, Predicate], ...] = tuple(
            (c.attribute, compile_condition(c, where=f"targeting.exclude[{i}]"))
            for i, c in enumerate(targeting.exclude)
        )
        self.attributes: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in self.include + self.exclude))
        self.check: Callable[[Mapping[str, Any]], bool] = _checker(self.include, self.exclude)

    def __bool__(self) -> bool:
        """Whether there is any rule at all."""
        return bool(self.include or self.exclude)

    def __call__(self, attributes: Mapping[str, Any]) -> bool:
        """True when every include condition holds and no exclude condition does."""
        return self.check(attributes)

    def evaluate_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> npt.NDArray[np.bool_]:
        """Eligibility of ``n`` units given attribute columns (a missing column is all missing).

        Each predicate runs once per distinct value of its column, so low-cardinality attributes
        (country, platform, app version) cost a dictionary look-up per unit.
        """
        eligible = np.ones(n, dtype=np.bool_)
        for rules, wanted in ((self.include, True), (self.exclude, False)):
            for name, predicate in rules:
                column = columns.get(name)
                if column is None:
                    holds = np.full(n, predicate(None), dtype=np.bool_)
                else:
                    holds = _map_predicate(predicate, column, n)
                eligible &= holds if wanted else ~holds
        return eligible


def _checker(
    include: tuple[tuple[str, Predicate], ...], exclude: tuple[tuple[str, Predicate], ...]
) -> Callable[[Mapping[str, Any]], bool]:
    # A closure is cheaper to call than an instance's __call__; the hot path calls it directly.
    def check(attributes: Mapping[str, Any]) -> bool:
        get = attributes.get
        for name, predicate in include:
            if not predicate(get(name)):
                return False
        for name, predicate in exclude:  # noqa: SIM110 - a plain loop is faster than all() on this hot path
            if predicate(get(name)):
                return False
        return True

    return check


def _map_predicate(predicate: Predicate, column: Sequence[Any], n: int) -> npt.NDArray[np.bool_]:
    """``predicate`` over a column, evaluated once per distinct value when the values allow it."""
    if isinstance(column, np.ndarray) and column.dtype.kind in "USbiuf":
        # numpy strings, booleans and numbers: factorise in C, then one call per distinct value
        distinct_values, inverse = np.unique(column, return_inverse=True, equal_nan=False)
        per_value = np.fromiter(map(predicate, distinct_values.tolist()), dtype=np.bool_, count=len(distinct_values))
        return per_value[inverse.reshape(-1)]
    if isinstance(column, np.ndarray):
        column = column.tolist()
    try:
        distinct = set(column)
    except TypeError:  # unhashable values: one call per unit
        return np.fromiter(map(predicate, column), dtype=np.bool_, count=n)
    types = set(map(type, distinct))
    # True == 1 == 1.0 as dictionary keys; 1 and 1.0 always give the same answer, True does not.
    if bool in types and types & {int, float}:
        return np.fromiter(map(predicate, column), dtype=np.bool_, count=n)
    results = {value: predicate(value) for value in distinct}
    return np.fromiter(map(results.__getitem__, column), dtype=np.bool_, count=n)


def compile_targeting(targeting: Targeting) -> CompiledTargeting:
    """Compile a :class:`Targeting` once; the result is a callable ``attributes -> bool``.

    >>> rule = compile_targeting(Targeting(
    ...     include=(Condition("country", "in", ["US", "CA"]), Condition("app_version", "version_gte", "2.1")),
    ...     exclude=(Condition("employee", "eq", True),),
    ... ))
    >>> rule({"country": "US", "app_version": "2.10.0"}), rule({"country": "US", "app_version": "2.9"})
    (True, True)
    >>> rule({"country": "FR", "app_version": "3.0"}), rule({"country": "CA", "app_version": "2.1", "employee": "true"})
    (False, False)
    """
    return CompiledTargeting(targeting)


def matches(targeting: Targeting, attributes: Mapping[str, Any]) -> bool:
    """One-off evaluation (compiles each time; hot paths keep a :func:`compile_targeting` result)."""
    return compile_targeting(targeting)(attributes)
