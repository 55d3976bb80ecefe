"""The webhook signature: HMAC-SHA256 of "<t>.<body>", checked by verify with a replay window."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from splitlab.notify import sign, verify

BODY = b'{"id":1,"kind":"test"}'
T = 1_700_000_000


def test_the_digest_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(b"k", BODY, timestamp=T) == f"t={T},v1={expected}"
    assert sign("k", BODY, timestamp=T) == sign(b"k", BODY, timestamp=T)


def test_verify_accepts_the_signed_body_and_nothing_else() -> None:
    header = sign(b"k", BODY, timestamp=T)
    assert verify(b"k", header, BODY, now=T + 299)
    assert not verify(b"k", header, BODY + b" ", now=T)  # a changed body
    assert not verify(b"other", header, BODY, now=T)  # another secret
    assert not verify(b"k", header, BODY, now=T + 301)  # a replay past the tolerance
    assert not verify(b"k", header, BODY, now=T - 301)
    assert verify(b"k", header, BODY, now=T + 3000, tolerance_seconds=3600)
    forged = header.replace(f"t={T}", f"t={T + 60}")  # a fresh timestamp on an old signature
    assert not verify(b"k", forged, BODY, now=T + 60)


def test_any_of_several_digests_may_match() -> None:
    # A receiver rotating secrets may see (or a proxy may add) more than one v1.
    good = sign(b"k", BODY, timestamp=T).split(",")[1]
    assert verify(b"k", f"t={T},v1={'0' * 64},{good}", BODY, now=T)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", f"t={T}", "garbage", f"t={T},v1="])
def test_malformed_headers_are_false_not_errors(header: str) -> None:
    assert verify(b"k", header, BODY, now=T) is False
