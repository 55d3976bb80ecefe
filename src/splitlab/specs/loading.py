"""Experiment specs and metric definitions in and out of YAML.

A file holds one experiment (a mapping with ``key``), a list of experiments, or a mapping with
``metrics:`` (a list of definitions, or a mapping of name to definition) and optionally
``experiments:``; several YAML documents (``---``) may share a file. Problems are reported as
``file:line: experiment 'key': field.path: message``, all of them at once, in a :class:`SpecError`.

Example:
    >>> spec = load_spec('''
    ... key: button-color
    ... variants: [{key: control}, {key: blue}]
    ... ''')
    >>> spec.variants[1].weight
    0.5
    >>> load_spec(dump_spec(spec)) == spec
    True
    >>> load_spec('''
    ... key: button-color
    ... variants: [{key: control, wieght: 0.5}, {key: blue}]
    ... ''')
    Traceback (most recent call last):
    ...
    splitlab.specs.loading.SpecError: <yaml text>:3: experiment 'button-color': variants.0.wieght: unknown field, ...
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from splitlab.specs.model import (
    ExperimentSpec,
    MetricDefinition,
    NotificationTarget,
    NotificationTargets,
    undefined_metrics,
)

__all__ = [
    "Catalog",
    "SpecError",
    "dump_metrics",
    "dump_spec",
    "load_catalog",
    "load_notification_targets",
    "load_spec",
]

Loc = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)
_TEXT_LABEL = "<yaml text>"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NAMED_FIELD = re.compile(r"([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*) (?:==|is |differs|has )")


class SpecError(ValueError):
    """Specs or metric definitions that cannot be loaded.

    Attributes:
        problems: one line per problem, ``file:line: what: field.path: message``.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Experiments by key and metric definitions by name, in file order, every reference checked."""

    experiments: dict[str, ExperimentSpec]
    metrics: dict[str, MetricDefinition]


@dataclass(frozen=True, slots=True)
class _Document:
    """One parsed YAML document with the line (1-based) of every mapping key and sequence item."""

    label: str
    data: Any
    lines: dict[Loc, int]

    def line(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that is in the document."""
        for end in range(len(loc), -1, -1):
            if (line := self.lines.get(loc[:end])) is not None:
                return line
        return 1

    def where(self, loc: Loc) -> str:
        return f"{self.label}:{self.line(loc)}"


def _index(node: yaml.Node, path: Loc, doc: _Document, seen: set[int], problems: list[str]) -> None:
    """Record the line of every key / item under ``node`` and report duplicate keys."""
    if id(node) in seen:  # an alias: indexed where its anchor is (and recursion is cut)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in first:
                problems.append(f"{doc.label}:{line}: duplicate key {key!r} (first at line {first[key]})")
                continue
            first[key] = line
            doc.lines[(*path, key)] = line
            _index(value_node, (*path, key), doc, seen, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            doc.lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), doc, seen, problems)


def _join_surrogates(
    node: yaml.Node, path: Loc, label: str, seen: set[int], problems: list[str], *, key: bool = False
) -> None:
    r"""Make every scalar under ``node`` valid Unicode, or report the ones that cannot be; ``path`` names them.

    A double-quoted YAML scalar may escape UTF-16 surrogates (``"\ud83d\ude00"``), which PyYAML
    keeps as two code points: a pair is joined into its character, as a JSON parser does, and a
    lone one is refused, as the JSON path refuses it (no encoder would store it, and pydantic's
    serialiser would turn it into U+FFFD unannounced).
    """
    if id(node) in seen:  # an alias: checked where its anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if node.value.isascii():
            return
        try:
            node.value = node.value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            where = ".".join(_escaped(str(part)) for part in path) or "document"
            what = "key" if key else "value"
            line = node.start_mark.line + 1
            problems.append(f"{label}:{line}: {where}: {what} must be valid Unicode (no lone surrogates)")
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _join_surrogates(key_node, (*path, name), label, seen, problems, key=True)
            _join_surrogates(value_node, (*path, name), label, seen, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _join_surrogates(item, (*path, index), label, seen, problems)


def _escaped(text: str) -> str:
    """``text`` with each character UTF-8 cannot encode (a lone surrogate) written as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _yaml_problem(label: str, exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"{label}: invalid YAML: {exc}"
    mark = exc.problem_mark or exc.context_mark
    where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
    return f"{where}: invalid YAML: {', '.join(p for p in (exc.context, exc.problem) if p)}"


def _parse(text: str, label: str) -> list[_Document]:
    """Every non-empty document of ``text``; raise :class:`SpecError` on a syntax error or duplicate key."""
    loader = yaml.SafeLoader(text)
    docs: list[_Document] = []
    problems: list[str] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            doc = _Document(label, None, {(): node.start_mark.line + 1})
            _join_surrogates(node, (), label, set(), problems)
            # Index before constructing: construction flattens merge keys in place.
            _index(node, (), doc, set(), problems)
            data = loader.construct_document(node)
            if data is not None:
                docs.append(_Document(label, data, doc.lines))
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_problem(label, exc)]) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    return docs


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _submodel(arg)) is not None:
            return found
    return None


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` under ``model`` (none if it is not a model)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part) if current is not None else None
        current = _submodel(info.annotation) if info is not None else None
    return list(current.model_fields) if current is not None else []


def _message(err: ErrorDetails, model: type[BaseModel]) -> str:
    kind, loc = err["type"], err["loc"]
    if kind in ("value_error", "assertion_error"):
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return f"unknown field, did you mean {close[0]!r}?" if close else f"unknown field (known: {', '.join(known)})"
    return f"{err['msg']} (got {err['input']!r})"


def _validate(model: type[_M], data: Any, doc: _Document, base: Loc, what: str, problems: list[str]) -> _M | None:
    """``model`` validated from ``data`` (found at ``base`` in ``doc``), or None with the problems appended."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(map(str, err["loc"]))
            message = _message(err, model)
            # A rule on several fields names them in its message; point at the first one's line.
            named = _NAMED_FIELD.match(message)
            extra = tuple(int(p) if p.isdigit() else p for p in named.group(1).split(".")) if named else ()
            where = doc.where((*base, *err["loc"], *extra))
            problems.append(f"{where}: {what}: {field + ': ' if field else ''}{message}")
        return None


def _describe(kind: str, data: Any) -> str:
    name = data.get("key" if kind == "experiment" else "name") if isinstance(data, dict) else None
    return f"{kind} {name!r}" if isinstance(name, str) else kind


def _read(source: str | os.PathLike[str]) -> tuple[str, str]:
    if isinstance(source, os.PathLike) or ("\n" not in source and source.strip().endswith((".yaml", ".yml"))):
        path = Path(source)
        return path.read_text(encoding="utf-8"), str(path)
    return source, _TEXT_LABEL


def _type_name(data: Any) -> str:
    for kind, name in ((dict, "a mapping"), (list, "a list"), (str, "a string")):
        if isinstance(data, kind):
            return name
    return type(data).__name__


def load_spec(source: str | os.PathLike[str], *, metrics: Collection[str] | None = None) -> ExperimentSpec:
    """One experiment spec from a ``.yaml``/``.yml`` path or from YAML text.

    Args:
        source: a path (a ``PathLike``, or a one-line string ending in ``.yaml`` or ``.yml``) or YAML text.
        metrics: names of the defined metrics (e.g. ``catalog.metrics``); when given, every metric
            the spec refers to must be among them. Default: not checked.

    Raises:
        SpecError: invalid YAML or an invalid spec; the message names file, line and field.
        OSError: the file cannot be read.
    """
    text, label = _read(source)
    docs = _parse(text, label)
    if len(docs) != 1:
        raise SpecError([f"{label}: expected one experiment, found {len(docs)} YAML documents"])
    doc = docs[0]
    if not isinstance(doc.data, dict):
        hint = ""
        if isinstance(doc.data, list):
            hint = "; load a list of experiments with load_catalog"
        elif isinstance(doc.data, str):
            hint = "; a path must end in .yaml or .yml"
        msg = f"{label}:{doc.line(())}: expected a mapping of experiment fields, got {_type_name(doc.data)}"
        raise SpecError([msg + hint])
    problems: list[str] = []
    spec = _validate(ExperimentSpec, doc.data, doc, (), _describe("experiment", doc.data), problems)
    if spec is not None and metrics is not None:
        _check_references(spec, doc, (), metrics, problems)
    if spec is None or problems:
        raise SpecError(problems)
    return spec


def _items(doc: _Document, problems: list[str]) -> Iterator[tuple[str, Any, Loc]]:
    """``(kind, data, location)`` of every experiment and metric definition in ``doc``."""
    data = doc.data
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield "experiment", item, (i,)
    elif isinstance(data, dict) and data and set(data) <= {"experiments", "metrics"}:
        experiments = data.get("experiments", [])
        if not isinstance(experiments, list):
            problems.append(
                f"{doc.where(('experiments',))}: experiments: expected a list, got {_type_name(experiments)}"
            )
            experiments = []
        for i, item in enumerate(experiments):
            yield "experiment", item, ("experiments", i)
        yield from _metric_items(doc, data.get("metrics", []), problems)
    elif isinstance(data, dict):
        yield "experiment", data, ()
    else:
        problems.append(
            f"{doc.where(())}: expected an experiment (a mapping with 'key'), a list of experiments, "
            f"or a mapping with 'metrics' and/or 'experiments'; got {_type_name(data)}"
        )


def _metric_items(doc: _Document, metrics: Any, problems: list[str]) -> Iterator[tuple[str, Any, Loc]]:
    if isinstance(metrics, list):
        for i, item in enumerate(metrics):
            yield "metric", item, ("metrics", i)
    elif isinstance(metrics, dict):
        for name, body in metrics.items():
            loc: Loc = ("metrics", str(name))
            if isinstance(body, dict) and body.get("name", name) != name:
                problems.append(
                    f"{doc.where((*loc, 'name'))}: metric {name!r}: name == {body['name']!r}, must match its key"
                )
                continue
            yield "metric", ({"name": name, **body} if isinstance(body, dict) else body), loc
    else:
        problems.append(f"{doc.where(('metrics',))}: metrics: expected a list or a mapping, got {_type_name(metrics)}")


def _check_references(
    spec: ExperimentSpec, doc: _Document, base: Loc, defined: Collection[str], problems: list[str]
) -> None:
    for path, message in undefined_metrics(spec, defined):
        loc = tuple(int(p) if p.isdigit() else p for p in path.split("."))
        problems.append(f"{doc.where((*base, *loc))}: experiment {spec.key!r}: {path}: {message}")


@dataclass(frozen=True, slots=True)
class _Found:
    """Where a loaded object was defined."""

    doc: _Document
    base: Loc

    def where(self, loc: Loc = ()) -> str:
        return self.doc.where((*self.base, *loc))


def _check_namespaces(experiments: dict[str, tuple[ExperimentSpec, _Found]], problems: list[str]) -> None:
    layers: dict[str, list[tuple[ExperimentSpec, _Found]]] = {}
    for spec, found in experiments.values():
        if spec.namespace is not None:
            layers.setdefault(spec.namespace.name, []).append((spec, found))
    for name, members in layers.items():
        for i, (a, found_a) in enumerate(members):
            for b, found_b in members[i + 1 :]:
                (a0, a1), (b0, b1) = a.namespace.range, b.namespace.range  # type: ignore[union-attr]
                if a0 < b1 and b0 < a1:
                    problems.append(
                        f"{found_b.where(('namespace', 'range'))}: experiments {a.key!r} "
                        f"({found_a.where(('namespace', 'range'))}) and {b.key!r} overlap in namespace {name!r}: "
                        f"[{a0}, {a1}) and [{b0}, {b1}); the ranges of one namespace must be disjoint"
                    )


def load_catalog(path: str | os.PathLike[str], *, defined_metrics: Collection[str] = ()) -> Catalog:
    """Every experiment and metric definition in a folder (its ``*.yaml`` and ``*.yml`` files) or one file.

    Checks, across all files: experiment keys and metric names are unique, every metric an
    experiment refers to is defined (in the files, or among ``defined_metrics``: those a store
    already holds), and experiments of one namespace have disjoint ranges.

    Raises:
        SpecError: every problem found, each with file and line.
        OSError: a file cannot be read.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise SpecError([f"{root}: no .yaml or .yml files"])
    else:
        files = [root]
    problems: list[str] = []
    experiments: dict[str, tuple[ExperimentSpec, _Found]] = {}
    metrics: dict[str, tuple[MetricDefinition, _Found]] = {}
    for file in files:
        try:
            docs = _parse(file.read_text(encoding="utf-8"), str(file))
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        for doc in docs:
            for kind, data, base in _items(doc, problems):
                found = _Found(doc, base)
                what = _describe(kind, data)
                if kind == "experiment":
                    spec = _validate(ExperimentSpec, data, doc, base, what, problems)
                    if spec is not None and spec.key in experiments:
                        problems.append(
                            f"{found.where()}: {what}: key already defined at {experiments[spec.key][1].where()}"
                        )
                    elif spec is not None:
                        experiments[spec.key] = (spec, found)
                else:
                    metric = _validate(MetricDefinition, data, doc, base, what, problems)
                    if metric is not None and metric.name in metrics:
                        problems.append(
                            f"{found.where()}: {what}: name already defined at {metrics[metric.name][1].where()}"
                        )
                    elif metric is not None:
                        metrics[metric.name] = (metric, found)
    defined = {*defined_metrics, *metrics}
    for spec, found in experiments.values():
        _check_references(spec, found.doc, found.base, defined, problems)
    _check_namespaces(experiments, problems)
    if problems:
        raise SpecError(problems)
    return Catalog(
        experiments={key: spec for key, (spec, _) in experiments.items()},
        metrics={name: metric for name, (metric, _) in metrics.items()},
    )


def load_notification_targets(source: str | os.PathLike[str]) -> tuple[NotificationTarget, ...]:
    """The global notification targets: a YAML mapping whose ``notifications:`` lists them.

    Args:
        source: a path (a ``PathLike``, or a one-line string ending in ``.yaml`` or ``.yml``) or YAML text.

    Raises:
        SpecError: invalid YAML or targets; each problem names file, line and field
            (``targets.yaml:7: notification targets: notifications.1.url: ...``).
        OSError: the file cannot be read.
    """
    text, label = _read(source)
    docs = _parse(text, label)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        got = f"{len(docs)} YAML documents" if len(docs) != 1 else _type_name(docs[0].data)
        raise SpecError([f"{label}: expected a mapping with 'notifications:' (a list of targets), got {got}"])
    problems: list[str] = []
    loaded = _validate(NotificationTargets, docs[0].data, docs[0], (), "notification targets", problems)
    if loaded is None:
        raise SpecError(problems)
    return loaded.notifications


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002 - a spec is a tree: never write anchors
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    # Lists of scalars (goal metrics, a namespace range, `in` values) read best on one line.
    flow = all(isinstance(item, str | int | float | bool) or item is None for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def dump_spec(spec: ExperimentSpec) -> str:
    """The spec as YAML, defaults left out; ``load_spec(dump_spec(spec)) == spec``."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    for field in ("name", "seed"):
        if data.get(field) == spec.key:
            del data[field]
    return _dump(data)


def dump_metrics(metrics: Iterable[MetricDefinition]) -> str:
    """Metric definitions as a ``metrics:`` YAML file that :func:`load_catalog` reads back."""
    return _dump({"metrics": [m.model_dump(mode="json", exclude_defaults=True) for m in metrics]})
