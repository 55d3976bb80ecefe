"""Request and response bodies of the HTTP API, named by role (``...Create``, ``...Public``, ``...Batch``).

Strings are checked for what the databases refuse (NUL characters, lone surrogates), JSON objects
for non-finite numbers and excessive nesting (events' properties as the store encodes them, see
``splitlab.service.routes.ingest``), and times must carry a time zone, so that every input a
database would choke on is a 422 naming the field instead of a 500.

A unit's ``attributes`` (on ``/assign``, ``/assign/batch`` and exposures) are flat: at most
:data:`MAX_ATTRIBUTES` keys, each value a string, number, boolean or null, the whole object at most
:data:`MAX_ATTRIBUTES_BYTES` once encoded. An event's ``properties`` may nest (as deep as the store
takes, ``MAX_JSON_DEPTH``) within the same count of keys and bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StringConstraints,
    WithJsonSchema,
)

from splitlab.storage.json_values import json_problems, storable_text
from splitlab.storage.records import MAX_VALUE

if TYPE_CHECKING:
    from splitlab.storage import ExperimentRecord

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTES_BYTES",
    "NO_NUL",
    "PYTHON_WHITESPACE",
    "TEXT",
    "AssignBatchRequest",
    "AssignRequest",
    "AssignmentBatchPublic",
    "AssignmentPublic",
    "BanditWeightsPublic",
    "ChangePublic",
    "ConfigExperimentPublic",
    "ConfigPublic",
    "ErrorPublic",
    "EventBatch",
    "EventCreate",
    "ExperimentApplyPublic",
    "ExperimentPublic",
    "ExposureBatch",
    "ExposureCreate",
    "FeedbackCreate",
    "FeedbackPublic",
    "FieldError",
    "IngestPublic",
    "PredictRequest",
    "ProblemPublic",
    "ResultsPublic",
    "RewardBatch",
    "RewardCreate",
    "RewardsPublic",
    "StatusPublic",
    "UnitCreate",
    "body_schema",
    "encoded_size",
    "printable",
]


NO_NUL = r"^[^\x00]*$"
"""The pattern of text the databases take (PostgreSQL refuses NUL). Checked by pydantic-core, which
also refuses lone surrogates; :func:`splitlab.service.errors.validation_problems` words both for people."""

PYTHON_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters ``str.isspace`` (and so ``str.strip``) takes for whitespace, which the store's
``check_text`` refuses as a whole id; Unicode's White_Space, the regex ``\\s``, leaves out ``\\x1c``-``\\x1f``."""

TEXT = "^[^\\x00]*[^\\x00" + "".join(f"\\u{ord(c):04x}" for c in PYTHON_WHITESPACE) + "][^\\x00]*$"
"""The pattern of an id or a name: no NUL, and not blank (at least one character besides whitespace)."""


MAX_ATTRIBUTES = 100
"""Most keys in a unit's ``attributes`` (``/assign``, ``/assign/batch``, exposures) or an event's ``properties``."""

MAX_ATTRIBUTES_BYTES = 8 * 1024
"""Largest ``attributes`` or ``properties`` object, in bytes of the JSON the store keeps (compact, UTF-8)."""

_SCALAR = str | int | float | None  # bool is an int
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""The store's encoding of a JSON column (``storable_text`` reads its output)."""


class FieldError(ValueError):
    """A validator's refusal of a part of the value it checks: what is wrong with ``field`` (a dotted path in it).

    :func:`splitlab.service.errors.validation_problems` names it under the validated field
    (``attributes`` + ``country``: ``attributes.country``); an empty ``field`` is the value itself.
    """

    def __init__(self, field: str, message: str) -> None:
        # Printable: pydantic-core hands the message to Rust, where a lone surrogate raises instead.
        self.field, self.message = printable(field), printable(message)
        super().__init__(f"{self.field}: {self.message}" if field else self.message)


def printable(text: str) -> str:
    r"""``text`` as valid Unicode: each character UTF-8 cannot encode (a lone surrogate) written as its escape.

    Field names and messages echo what the client sent, and a JSON string may carry a lone
    surrogate (``"\ud800"``) that no UTF-8 encoder takes: the answer would fail to encode.

    >>> printable("country")
    'country'
    >>> printable("a\ud800b")
    'a\\ud800b'
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def encoded_size(text: str) -> int:
    """The bytes of ``text`` in UTF-8 (its length when ASCII, without encoding it)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_type(value: object) -> str:
    return "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else type(value).__name__


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Flat attributes the store and the targeting take (see the module docstring), or the first problem."""
    if value is None:
        return None
    for key, item in value.items():
        if not isinstance(item, _SCALAR):
            raise FieldError(key, f"is {_json_type(item)}: attribute values are strings, numbers, booleans or null")
    try:
        text = _ENCODE(value)
    except ValueError:  # a non-finite number, or an integer of more digits than Python prints
        problems = json_problems(value, "")
        raise FieldError(*problems[0]) if problems else FieldError("", "cannot be encoded as JSON") from None
    # A no of the quick test may be brackets inside strings: json_problems decides.
    if not storable_text(text) and (problems := json_problems(value, "")):
        raise FieldError(*problems[0])
    if (size := encoded_size(text)) > MAX_ATTRIBUTES_BYTES:
        raise FieldError("", f"is {size} bytes once encoded as JSON, at most {MAX_ATTRIBUTES_BYTES}")
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = "is out of range once converted to UTC"
        raise ValueError(msg) from None


Key = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
# Checked in pydantic-core alone: a Python validator per field is a call out of the parser per value.
Text = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=TEXT)]
Attributes = Annotated[
    Annotated[
        dict[str, Annotated[Any, WithJsonSchema({"type": ["string", "number", "boolean", "null"]})]],
        Field(max_length=MAX_ATTRIBUTES),
    ]
    | None,
    AfterValidator(_check_attributes),
]
"""A unit's attributes: flat, :data:`MAX_ATTRIBUTES` keys (counted in Rust), in :data:`MAX_ATTRIBUTES_BYTES`."""
Properties = Annotated[dict[str, Any], Field(max_length=MAX_ATTRIBUTES)] | None
"""An event's properties: at most :data:`MAX_ATTRIBUTES` keys here; bytes and content as the store encodes them."""
# Strict: without it, pydantic also takes a number of seconds for a time and true/false or a numeric
# string for a number, none of which the documented schema (an RFC 3339 string, a number) allows.
Timestamp = Annotated[AwareDatetime, Strict(), AfterValidator(_utc)]
AwareTimestamp = Annotated[AwareDatetime, Strict()]
"""A :data:`Timestamp` left in its own offset: for events, whose store encoding converts it (and names overflows)."""
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
EventValue = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-MAX_VALUE, le=MAX_VALUE)]
"""An event's value: finite, and its square too (the statistics sum squares), checked in pydantic-core."""


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a request body declared by hand (``openapi_extra``), for the OpenAPI document.

    Its parts are referred to where the app's OpenAPI document keeps them, ``#/components/schemas/``
    (a ``#/$defs/`` reference would resolve against the document's root); they travel in the
    schema's ``$defs``, which the app moves there (:func:`splitlab.service.app.create_app`).
    """
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssignRequest(_Body):
    """One unit to assign to a variant of ``experiment``; ``attributes`` feed targeting."""

    experiment: Key
    unit_id: Text
    attributes: Attributes = None


class PredictRequest(_Body):
    """A routed request: the unit, its attributes (for targeting) and the model ``input`` forwarded as JSON."""

    unit_id: Text
    input: JsonValue
    attributes: Attributes = None


RequestId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
"""A request id: the router's (32 hex digits), or the client's ``X-Request-Id`` of this shape."""


class FeedbackCreate(_Body):
    """What was learned about a routed request: its true ``label``, a ``reward``, a ``conversion`` (at least one)."""

    request_id: RequestId
    label: Annotated[str, StringConstraints(max_length=1000, pattern=TEXT)] | Annotated[int, Strict()] | bool | None = (
        None
    )
    reward: Number | None = None
    conversion: Annotated[bool, Strict()] | None = None
    timestamp: Timestamp | None = None


class FeedbackPublic(BaseModel):
    """The feedback's events: ``received`` and ``inserted`` (feedback sent again adds nothing)."""

    request_id: str
    received: int
    inserted: int


class UnitCreate(_Body):
    """One unit of a batch assignment."""

    unit_id: Text
    attributes: Attributes = None


class AssignBatchRequest(_Body):
    """Units to assign to variants of ``experiment``."""

    experiment: Key
    units: list[UnitCreate]


class AssignmentPublic(BaseModel):
    """A unit's assignment: ``variant`` and its ``payload`` (None when not ``enrolled``), and why."""

    experiment: str
    unit_id: str
    variant: str | None
    payload: Any
    enrolled: bool
    bucket: float | None
    reason: str


class AssignmentBatchPublic(BaseModel):
    """Assignments in the order of the request's units."""

    experiment: str
    assignments: list[AssignmentPublic]


class ExposureCreate(_Body):
    """``unit_id`` saw ``variant`` of ``experiment`` at ``timestamp``."""

    experiment: Key
    unit_id: Text
    variant: Text
    timestamp: Timestamp
    attributes: Attributes = None


class ExposureBatch(_Body):
    """Exposures, written all or nothing; re-sending one adds nothing."""

    exposures: list[ExposureCreate]


class EventCreate(_Body):
    """An event; ``event_id`` is its idempotency key."""

    event_id: Text
    unit_id: Text
    name: Text
    timestamp: AwareTimestamp
    value: EventValue | None = None
    properties: Properties = None  # the rest checked as the store encodes it (see routes.ingest)


class EventBatch(_Body):
    """Events, written all or nothing; re-sending an event id adds nothing."""

    events: list[EventCreate]


class IngestPublic(BaseModel):
    """What a batch write did: items received, new ones inserted, duplicates, and conflicts.

    ``conflicts`` are exposures of a unit in another variant than the one recorded for it (the
    unit is left out of analysis); always 0 for events.
    """

    received: int
    inserted: int
    duplicates: int
    conflicts: int = 0


class ExperimentPublic(BaseModel):
    """An experiment's current state (``rolled_out_variant``: the variant served to everyone when rolled out)."""

    key: str
    status: str
    rolled_out_variant: str | None = None
    version: int
    bucket_version: int
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str

    @classmethod
    def of(cls, record: ExperimentRecord) -> ExperimentPublic:
        """The public form of a stored experiment (``version`` is its current version)."""
        return cls(
            key=record.key,
            status=record.status,
            rolled_out_variant=record.rolled_out_variant,
            version=record.current_version,
            bucket_version=record.bucket_version,
            spec=record.spec,
            created_at=record.created_at,
            updated_at=record.updated_at,
            created_by=record.created_by,
        )


class ChangePublic(BaseModel):
    """One changed value of a spec update."""

    path: str
    old: Any
    new: Any


class ExperimentApplyPublic(BaseModel):
    """What a PUT did: ``created``, ``updated`` or ``unchanged``, the changes, notes, and the experiment after."""

    action: str
    changes: list[ChangePublic]
    notes: list[str] = []
    experiment: ExperimentPublic


class ResultsPublic(BaseModel):
    """A stored analysis readout of an experiment; ``fresh`` when this request ran the analysis."""

    experiment: str
    snapshot_id: int
    spec_version: int
    created_at: datetime
    fresh: bool
    payload: dict[str, Any]


class PhasePublic(BaseModel):
    """One allocation phase: a period with its own weights (see docs/aggregation.md)."""

    phase: int
    started_at: datetime
    spec_version: int
    weights: dict[str, float]
    units: dict[str, int]
    srm_p_value: float | None


class StatusPublic(BaseModel):
    """Where an experiment stands (as ``splitlab status --json``)."""

    experiment: str
    status: str
    days_running: float
    configured: dict[str, float]
    units: dict[str, int]
    planned_per_variant: int | None
    srm_p_value: float | None
    srm_flag: bool
    excluded_units: int
    phases: list[PhasePublic] = []


class ConfigExperimentPublic(ExperimentPublic):
    """A running (or rolled-out) experiment as SDKs evaluate it; a bandit experiment carries its current ``weights``."""

    weights: list[float] | None = None


class ConfigPublic(BaseModel):
    """The running and rolled-out experiments, for SDKs that assign locally; ``version`` is the ETag (unquoted)."""

    version: str
    experiments: list[ConfigExperimentPublic]


class BanditWeightsPublic(BaseModel):
    """A bandit experiment's allocation for the current window (:class:`splitlab.operations.bandits.BanditWeights`)."""

    experiment: str
    window: int
    variants: list[str]
    weights: list[float]
    phase: str
    winner: str | None
    p_best: list[float | None]
    expected_loss: list[float | None]
    units: int


class RewardCreate(_Body):
    """A unit's reward: 1 or 0 for a conversion, or a number (revenue, time ...)."""

    unit_id: Text
    reward: Number


class RewardBatch(_Body):
    """Rewards of a bandit experiment; a unit's first reward is its reward (re-sending adds nothing)."""

    rewards: list[RewardCreate]


class RewardsPublic(BaseModel):
    """What a rewards batch did: rewards received, newly recorded, already recorded, and units with no assignment."""

    received: int
    recorded: int
    duplicates: int
    skipped: list[str]


class ProblemPublic(BaseModel):
    """One problem with a request: the field it is about and what is wrong."""

    field: str
    message: str


class ErrorPublic(BaseModel):
    """The body of every error answer (see :mod:`splitlab.service.errors`)."""

    detail: list[ProblemPublic]
