"""Hash versions: pinned vectors, an independent MurmurHash3, GrowthBook's vectors, and statistical properties."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mmh3
import numpy as np
import pytest
from scipy import stats

from splitlab.assignment import fnv1a32, growthbook_hash, unit_hash, unit_hash_batch
from splitlab.assignment.hashing import js_number_string, v1_key

DATA = Path(__file__).parent / "data"
V1 = json.loads((DATA / "hash_vectors_v1.json").read_text(encoding="utf-8"))["vectors"]
GROWTHBOOK = json.loads((DATA / "growthbook_cases.json").read_text(encoding="utf-8"))


def reference_murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 written from Appleby's reference (and the docs' pseudo-code), not from mmh3."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    n_blocks = len(data) // 4
    for i in range(n_blocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = data[4 * n_blocks :]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


# --- version 1: pinned vectors ---------------------------------------------------------------


def test_the_vector_file_covers_what_it_must() -> None:
    values = {v["value"] for v in V1}
    assert len(V1) >= 200
    assert "" in values
    assert any(not v.isascii() for v in values)
    assert any(ord(c) > 0xFFFF for v in values for c in v)  # astral (emoji)
    assert max(len(v) for v in values) > 256
    assert len({v["seed"] for v in V1}) >= 5
    assert len({v["bucket_version"] for v in V1}) >= 4


@pytest.mark.parametrize("vector", V1, ids=lambda v: f"{v['seed']!r}:{v['bucket_version']}:{v['value'][:12]!r}")
def test_unit_hash_v1_reproduces_the_pinned_vectors(vector: dict[str, Any]) -> None:
    value, seed, bv = vector["value"], vector["seed"], vector["bucket_version"]
    key = bytes.fromhex(vector["key_utf8_hex"])
    assert v1_key(value, seed, bv).encode("utf-8") == key
    assert reference_murmur3_x86_32(key) == vector["murmur3_x86_32"]
    assert vector["bucket"] == vector["murmur3_x86_32"] / 2**32
    assert unit_hash(value, seed, bucket_version=bv) == vector["bucket"]
    assert unit_hash(value, seed, version="1", bucket_version=bv) == vector["bucket"]


def test_batch_hash_reproduces_the_pinned_vectors() -> None:
    for (seed, bv), group in _group_by_seed(V1).items():
        got = unit_hash_batch([v["value"] for v in group], seed, bucket_version=bv)
        assert got.tolist() == [v["bucket"] for v in group]


def _group_by_seed(vectors: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for v in vectors:
        groups.setdefault((v["seed"], v["bucket_version"]), []).append(v)
    return groups


def test_reference_murmur_matches_mmh3_on_random_bytes() -> None:
    rng = np.random.default_rng(7)
    for length in range(40):
        for _ in range(5):
            data = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
            seed = int(rng.integers(0, 2**32))
            assert reference_murmur3_x86_32(data, seed) == mmh3.hash(data, seed, signed=False)


def test_bucket_version_and_seed_change_the_hash() -> None:
    assert unit_hash("user-1", "checkout") != unit_hash("user-1", "checkout", bucket_version=2)
    assert unit_hash("user-1", "checkout") != unit_hash("user-1", "checkout-2")
    assert 0.0 <= unit_hash("user-1", "checkout") < 1.0


def test_the_largest_hash_maps_below_one() -> None:
    assert (2**32 - 1) * 2.0**-32 < 1.0


# --- invalid input -----------------------------------------------------------------------------


def test_unknown_version_raises() -> None:
    with pytest.raises(ValueError, match="version == '3'"):
        unit_hash("u", "s", version="3")
    with pytest.raises(ValueError, match="version == 'v2'"):
        unit_hash_batch(["u"], "s", version="v2")


@pytest.mark.parametrize("bucket_version", [-1, 1.5, True, "1"])
def test_bad_bucket_version_raises(bucket_version: object) -> None:
    with pytest.raises(ValueError, match="bucket_version"):
        unit_hash("u", "s", bucket_version=bucket_version)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bucket_version"):
        unit_hash_batch(["u"], "s", bucket_version=bucket_version)  # type: ignore[arg-type]


def test_a_lone_surrogate_raises_instead_of_crashing() -> None:
    # mmh3 5.3 crashes the interpreter on such a str; splitlab encodes first and raises.
    with pytest.raises(ValueError, match="surrogates"):
        unit_hash("user-\ud800", "s")
    with pytest.raises(ValueError, match="surrogates"):
        unit_hash_batch(["ok", "user-\ud800"], "s")


def test_non_str_ids_raise_type_error() -> None:
    with pytest.raises(TypeError, match="every id must be a str"):
        unit_hash_batch(["a", 3], "s")  # type: ignore[list-item]


# --- GrowthBook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", GROWTHBOOK["hash"], ids=lambda c: f"{c[0]!r}-{c[1]!r}-v{c[2]}")
def test_growthbook_hash_reproduces_the_cross_sdk_vectors(case: list[Any]) -> None:
    seed, value, version, expected = case
    got = growthbook_hash(seed, value, version)
    assert got == expected
    if version == 2:
        assert unit_hash(value, seed, version="growthbook-v2") == expected
        assert unit_hash_batch([value], seed, version="growthbook-v2").tolist() == [expected]


def test_fnv1a32_known_values_and_utf16_code_units() -> None:
    # Published FNV-1a 32 values (Noll's test suite) for ASCII input
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968
    # Non-ASCII goes through UTF-16 code units, as JavaScript's charCodeAt does
    text = "é😀"
    units = [0xE9, 0xD83D, 0xDE00]
    h = 0x811C9DC5
    for u in units:
        h = ((h ^ u) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a32(text) == h


def test_growthbook_hash_equals_the_installed_sdk() -> None:
    core = pytest.importorskip("growthbook.core")
    rng = np.random.default_rng(3)
    alphabet = list("abcXYZ019-_:é日😀")
    for _ in range(300):
        value = "".join(rng.choice(alphabet, size=int(rng.integers(0, 12))))
        seed = "".join(rng.choice(alphabet, size=int(rng.integers(0, 6))))
        for version in (1, 2):
            assert growthbook_hash(seed, value, version) == core.gbhash(seed, value, version)


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0"), (-0.0, "0"), (123, "123"), (123.0, "123"), (0.1, "0.1"), (-2.5, "-2.5"), (1e21, "1e+21"),
     (1e20, "100000000000000000000"), (1.5e-7, "1.5e-7"), (0.000001, "0.000001"), (2**53, "9007199254740992"),
     (float("inf"), "Infinity"), (float("nan"), "NaN")],
)  # fmt: skip
def test_js_number_string_follows_ecmascript(number: float, text: str) -> None:
    assert js_number_string(number) == text


# --- properties ---------------------------------------------------------------------------------


def test_hashes_are_identical_in_another_process() -> None:
    ids = ["user-1", "", "ünïcödé", "👩‍🔬", "x" * 300]
    code = (
        "import json, sys\n"
        "from splitlab.assignment import unit_hash, unit_hash_batch\n"
        "ids = json.loads(sys.stdin.read())\n"
        "out = [[unit_hash(u, s, version=v, bucket_version=3) for u in ids] for s in ('a', 'checkout') for v in"
        " ('1', 'growthbook-v2')]\n"
        "out.append(unit_hash_batch(ids, 'checkout').tolist())\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], input=json.dumps(ids), capture_output=True, text=True, env=env, check=True
    )
    theirs = json.loads(done.stdout)
    ours = [
        [unit_hash(u, s, version=v, bucket_version=3) for u in ids]
        for s in ("a", "checkout")
        for v in ("1", "growthbook-v2")
    ]
    ours.append(unit_hash_batch(ids, "checkout").tolist())
    assert theirs == ours


MILLION = [f"user-{i}" for i in range(1_000_000)]


@pytest.mark.parametrize("seed", ["checkout", "free-shipping-threshold", "rec-algo"])
def test_buckets_are_uniform_over_a_million_ids(seed: str) -> None:
    buckets = unit_hash_batch(MILLION, seed)
    counts = np.bincount((buckets * 100).astype(np.int64), minlength=100)
    assert counts.sum() == len(MILLION)
    assert stats.chisquare(counts).pvalue > 0.001
    # and finer: 1000 cells, plus a Kolmogorov-Smirnov test against U(0, 1)
    fine = np.bincount((buckets * 1000).astype(np.int64), minlength=1000)
    assert stats.chisquare(fine).pvalue > 0.001
    assert stats.kstest(buckets, "uniform").pvalue > 0.001


def test_growthbook_v2_buckets_are_uniform_over_a_million_ids() -> None:
    buckets = unit_hash_batch(MILLION, "checkout", version="growthbook-v2")
    counts = np.bincount((buckets * 100).round(6).astype(np.int64), minlength=100)
    assert stats.chisquare(counts).pvalue > 0.001


def test_the_uniformity_check_can_fail() -> None:
    # A hash that ignores the end of the id (one value per 10 ids) is over-dispersed and caught.
    truncated = unit_hash_batch([u[:-1] for u in MILLION[:200_000]], "checkout")
    counts = np.bincount((truncated * 100).astype(np.int64), minlength=100)
    assert stats.chisquare(counts).pvalue < 0.001


def test_buckets_of_two_experiments_are_independent() -> None:
    a = unit_hash_batch(MILLION, "checkout")
    b = unit_hash_batch(MILLION, "free-shipping-threshold")
    table = np.histogram2d(a, b, bins=10, range=[[0, 1], [0, 1]])[0]
    assert stats.chi2_contingency(table).pvalue > 0.001
    # the same seed with a new bucket version re-randomises independently too
    c = unit_hash_batch(MILLION, "checkout", bucket_version=2)
    table = np.histogram2d(a, c, bins=10, range=[[0, 1], [0, 1]])[0]
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_the_independence_check_can_fail() -> None:
    # GrowthBook's hash v1 appends the seed, so two seeds ending differently give dependent buckets.
    ids = MILLION[:100_000]
    a = np.array([growthbook_hash("exp-a", u, 1) for u in ids], dtype=float)
    b = np.array([growthbook_hash("exp-b", u, 1) for u in ids], dtype=float)
    table = np.histogram2d(a, b, bins=10, range=[[0, 1], [0, 1]])[0]
    assert stats.chi2_contingency(table).pvalue < 0.001
