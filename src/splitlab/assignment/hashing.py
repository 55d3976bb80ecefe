"""Deterministic hashing of a unit to a number in [0, 1), in two versions.

Version ``"1"`` is splitlab's own: MurmurHash3_x86_32 (seed 0) of the UTF-8 bytes of
``f"{seed}:{bucket_version}:{value}"``, divided by 2^32. It is a fast C hash (``mmh3``), uniform to
2^-32, and easy to reproduce in any language (see ``docs/parts/assignment.md`` and the test vectors
in ``tests/assignment/data/hash_vectors_v1.json``).

Version ``"growthbook-v2"`` is GrowthBook's hash v2, reproduced bit for bit from the SDKs: FNV-1a 32
over the UTF-16 code units of ``seed + value``, then FNV-1a 32 again over the decimal string of that
number, modulo 10000, divided by 10000. GrowthBook's hash v1 (used for its namespaces) is here too.

References:
    Appleby, A. (2011). MurmurHash3, ``MurmurHash3_x86_32``. https://github.com/aappleby/smhasher
    Fowler, G., Noll, L. C., Vo, K.-P. FNV hash, FNV-1a. http://www.isthe.com/chongo/tech/comp/fnv/
    GrowthBook SDK ``hash(seed, value, version)``: growthbook/growthbook, packages/sdk-js/src/util.ts.
"""

from __future__ import annotations

import math
from typing import Final

import mmh3

HASH_SCALE: Final = 2.0**-32
"""Version 1 maps the unsigned 32-bit MurmurHash3 value ``h`` to ``h * 2**-32`` in [0, 1)."""

_FNV_OFFSET: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193
_MASK32: Final = 0xFFFFFFFF
_VERSIONS: Final = ("1", "growthbook-v2")


def v1_key(value: str, seed: str, bucket_version: int = 1) -> str:
    """The text hashed by version 1: ``f"{seed}:{bucket_version}:{value}"`` (hashed as UTF-8).

    >>> v1_key("user-1", "checkout", 2)
    'checkout:2:user-1'
    """
    return f"{seed}:{bucket_version}:{value}"


def unit_hash(value: str, seed: str, *, version: str = "1", bucket_version: int = 1) -> float:
    """Hash a unit (or any string) under a seed to a number in [0, 1).

    Args:
        value: the unit id (or the joined hash attributes); any valid Unicode string.
        seed: the experiment's hashing seed (by default its key).
        version: ``"1"`` (default, MurmurHash3_x86_32) or ``"growthbook-v2"`` (GrowthBook's hash v2).
        bucket_version: integer >= 0, bumped by a re-randomisation; part of the version 1 input.
            GrowthBook's hash ignores it, as GrowthBook does.

    Returns:
        ``murmur3_x86_32(utf8(f"{seed}:{bucket_version}:{value}"), seed=0) / 2**32`` for version 1,
        a multiple of 2^-32; ``(fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000`` for
        ``growthbook-v2``.

    Raises:
        ValueError: unknown ``version``, negative or non-integer ``bucket_version``, or a value that
            is not valid Unicode (a lone surrogate cannot be encoded as UTF-8).

    Examples:
        >>> unit_hash("user-1", "checkout")
        0.9382032305002213
        >>> unit_hash("user-1", "checkout", bucket_version=2)
        0.19652652204968035
        >>> unit_hash("1", "foo", version="growthbook-v2")
        0.5844

    References:
        Appleby (2011), MurmurHash3_x86_32; GrowthBook SDK ``hash(seed, value, 2)``.
    """
    if isinstance(bucket_version, bool) or not isinstance(bucket_version, int) or bucket_version < 0:
        raise ValueError(f"bucket_version == {bucket_version!r}, must be an integer >= 0")
    if version == "1":
        # Encode here: mmh3 5.3 crashes the interpreter on a str holding a lone surrogate.
        return mmh3.hash(f"{seed}:{bucket_version}:{value}".encode(), 0, False) * HASH_SCALE
    if version == "growthbook-v2":
        return growthbook_hash(seed, value, 2)  # type: ignore[return-value]  # version 2 never gives None
    raise ValueError(f"version == {version!r}, must be one of {_VERSIONS}")


def fnv1a32(text: str, *, start: int = _FNV_OFFSET) -> int:
    """FNV-1a 32 over the UTF-16 code units of ``text``, as the GrowthBook JS SDK's ``hashFnv32a``.

    ``start`` continues from an earlier state: ``fnv1a32(b, start=fnv1a32(a)) == fnv1a32(a + b)``.

    >>> fnv1a32("")
    2166136261
    >>> fnv1a32("a")
    3826002220
    >>> fnv1a32("b", start=fnv1a32("a")) == fnv1a32("ab")
    True
    """
    h = start
    if text.isascii():
        for unit in text.encode("ascii"):
            h = ((h ^ unit) * _FNV_PRIME) & _MASK32
        return h
    data = text.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | (data[i + 1] << 8))) * _FNV_PRIME) & _MASK32
    return h


def growthbook_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's ``hash(seed, value, version)``; ``None`` for an unknown version, as the SDKs.

    - version 2: ``(fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000``;
    - version 1 (biased, kept by GrowthBook for namespaces): ``(fnv1a32(value + seed) % 1000) / 1000``.

    >>> growthbook_hash("seed", "a", 2)
    0.0505
    >>> growthbook_hash("", "a", 1)
    0.22

    References:
        GrowthBook SDK ``hash``: growthbook/growthbook, packages/sdk-js/src/util.ts.
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def js_number_string(value: float) -> str:
    """A number as JavaScript's ``String(number)`` writes it (ECMAScript Number::toString).

    GrowthBook hashes numeric attributes through their JS string form, so ``123`` and ``123.0``
    both hash as ``"123"``; splitlab's attribute allocation uses the same form in both versions.

    >>> js_number_string(123.0), js_number_string(0.1), js_number_string(1e21), js_number_string(1.5e-7)
    ('123', '0.1', '1e+21', '1.5e-7')
    """
    try:
        x = float(value)
    except OverflowError:
        x = math.inf if value > 0 else -math.inf
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number_string(-x)
    if math.isinf(x):
        return "Infinity"
    # x = 0.d1...dk * 10**n, read from repr's shortest round-trip digits
    mantissa, _, exponent = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    padded = (whole + fraction).lstrip("0")
    digits = padded.rstrip("0")
    k = len(digits)
    n = int(exponent or "0") - len(fraction) + len(padded)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    lead = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{lead}e{'+' if n > 0 else '-'}{abs(n - 1)}"
