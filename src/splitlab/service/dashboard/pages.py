"""The dashboard's routes: sign-in and out, the experiments list, an experiment's page, planning, actions.

Server-rendered HTML (Jinja2, autoescaped), out of the OpenAPI schema. Every page but the sign-in
form needs a session (:mod:`splitlab.service.dashboard.sessions`); every POST but the sign-in
carries the session's form token (403 without it). Actions go through the same operations as the
CLI and the API (``change_status``, ``roll_out``) with the signed-in key as the actor; their
refusals come back as a message on the page.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import jinja2
from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from splitlab.operations import experiments
from splitlab.operations.errors import ConflictError, InvalidInputError
from splitlab.service.dashboard import views
from splitlab.service.dashboard.sessions import COOKIE, SessionSigner
from splitlab.service.deps import VIEWER, runtime_of
from splitlab.service.runtime import Runtime
from splitlab.storage import ApiKey, NotFoundError

__all__ = ["STATIC_DIR", "router"]

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
"""The style sheet and the confirmation dialogs' script, served at ``/static``."""
_FLASH = "splitlab_flash"
_ROLES = ("admin", VIEWER)
_MAX_REASON = 1000
_HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in user: the key and the session token (the form token derives from it)."""

    key: ApiKey
    token: str
    form_token: str

    @property
    def can_act(self) -> bool:
        """Whether the key may change experiments (admin; a viewer only reads)."""
        return self.key.role == "admin"

    @property
    def actor(self) -> str:
        """How the audit log names a change made from the dashboard."""
        return f"dashboard:{self.key.name} ({self.key.id})"


async def _signer(request: Request) -> SessionSigner:
    """The deployment's signer: ``session_secret`` from the settings, else the store's (read once per app)."""
    state = request.app.state
    signer: SessionSigner | None = getattr(state, "dashboard_signer", None)
    if signer is None:
        runtime = runtime_of(request)
        secret = runtime.settings.session_secret
        if secret is None:
            secret = await run_in_threadpool(runtime.store.keys.session_secret)
        signer = state.dashboard_signer = SessionSigner(secret)
    return signer


async def _session(request: Request) -> Session | None:
    """The request's session: a valid, unexpired token whose key is still active; else None."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    signer = await _signer(request)
    key_id = signer.key_id(token, now=time.time())
    if key_id is None:
        return None
    key = await runtime_of(request).active_key(key_id)
    if key is None or key.role not in _ROLES:
        return None
    return Session(key, token, signer.form_token(token))


async def _form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form (the first value of each; bodies are small, the guard bounds them)."""
    body = (await request.body()).decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


def _page(request: Request, template: str, context: Mapping[str, Any], *, status_code: int = 200) -> HTMLResponse:
    flash = request.cookies.get(_FLASH)
    response = templates.TemplateResponse(
        request,
        template,
        {"flash": unquote(flash) if flash else None, "session": None, **context},
        status_code=status_code,
        headers=_HEADERS,
    )
    if flash:
        response.delete_cookie(_FLASH, path="/")
    return response


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


def _back(url: str, request: Request, message: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        _FLASH, quote(message), max_age=60, path="/", httponly=True, samesite="strict", secure=_https(request)
    )
    return response


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _forbidden(request: Request, session: Session | None, message: str) -> HTMLResponse:
    return _page(request, "error.html", {"session": session, "title": "Forbidden", "message": message}, status_code=403)


# --- sign-in -------------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The sign-in form (or the list, for a signed-in user)."""
    if await _session(request) is not None:
        return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    return _page(request, "login.html", {"error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    """Trade an API key for a session cookie; an unknown key counts against the client as on the API."""
    runtime: Runtime = runtime_of(request)
    client = request.client.host if request.client else ""
    if wait := runtime.auth_failures.retry_after(client):
        runtime.telemetry.auth_failures.labels("throttled").inc()
        error = f"Too many sign-ins with invalid API keys from this address; retry in {wait} s."
        throttled = _page(request, "login.html", {"error": error}, status_code=429)
        throttled.headers["Retry-After"] = str(wait)
        return throttled
    text = (await _form(request)).get("key", "").strip()
    key = await runtime.verify_key(text) if text else None
    if key is None:
        runtime.auth_failures.note(client)
        runtime.telemetry.auth_failures.labels("invalid").inc()
        error = "That API key is not valid: unknown, malformed or revoked."
        return _page(request, "login.html", {"error": error}, status_code=401)
    if key.role not in _ROLES:
        error = f"Key {key.name!r} has role {key.role!r}: sign in with an admin or viewer key."
        return _page(request, "login.html", {"error": error}, status_code=403)
    hours = runtime.settings.session_hours
    token = (await _signer(request)).issue(key.id, now=time.time(), seconds=hours * 3600)
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session: the cookie is cleared (403 without the session's form token)."""
    session = await _session(request)
    if session is not None and not (await _signer(request)).check_form(
        session.token, (await _form(request)).get("csrf", "")
    ):
        return _forbidden(request, session, "The form's token is missing or wrong: reload the page and try again.")
    response: Response = _to_login()
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_https(request))
    return response


# --- pages ---------------------------------------------------------------------------------------


@router.get("/")
async def experiment_list(request: Request) -> Response:
    """Every experiment, filtered by ``status`` and searched by ``q`` (key or owner)."""
    session = await _session(request)
    if session is None:
        return _to_login()
    chosen = request.query_params.get("status") or None
    query = request.query_params.get("q", "")
    store = runtime_of(request).store
    try:
        rows = await run_in_threadpool(views.experiment_rows, store, status=chosen, query=query)
        error = None
    except InvalidInputError as exc:
        rows, error = [], "; ".join(message for _, message in exc.problems)
    context = {"session": session, "rows": rows, "status": chosen, "q": query, "error": error, "statuses": _STATUSES}
    return _page(request, "list.html", context)


_STATUSES = ("draft", "running", "paused", "stopped", "archived", "rolled_out")


@router.get("/experiments/{key}")
async def experiment(request: Request, key: str) -> Response:
    """One experiment: decision, traffic, metrics, lift over time, segments, guardrails, history, audit, actions."""
    session = await _session(request)
    if session is None:
        return _to_login()
    fresh = request.query_params.get("fresh") in ("1", "true")
    started = time.perf_counter()
    try:
        page = await run_in_threadpool(
            views.experiment_page, runtime_of(request).store, key, fresh=fresh, can_act=session.can_act
        )
    except NotFoundError as exc:
        context = {"session": session, "title": "Not found", "message": str(exc)}
        return _page(request, "error.html", context, status_code=404)
    context = {
        "session": session,
        "page": page,
        "labels": views.ACTIONS,
        "elapsed": time.perf_counter() - started,
    }
    return _page(request, "experiment.html", context)


@router.get("/planning")
async def planning(request: Request) -> Response:
    """The sample size / MDE / duration calculator (``splitlab sample-size``), prefilled by ``?experiment=KEY``."""
    session = await _session(request)
    if session is None:
        return _to_login()
    params = dict(request.query_params)
    store = runtime_of(request).store
    try:
        form = await run_in_threadpool(views.planning_form, store, params)
    except NotFoundError as exc:
        context = {"session": session, "title": "Not found", "message": str(exc)}
        return _page(request, "error.html", context, status_code=404)
    result, error = None, None
    if any(name in params for name in ("baseline", "mde")) or form.experiment:
        try:
            result = views.plan(form)
        except ValueError as exc:
            error = str(exc)
    return _page(request, "planning.html", {"session": session, "form": form, "result": result, "error": error})


# --- actions -------------------------------------------------------------------------------------


@router.post("/experiments/{key}/actions/{action}")
async def act(request: Request, key: str, action: str) -> Response:
    """Start, pause, stop, roll out or roll back ``key`` with a reason; back to its page with a message."""
    session = await _session(request)
    if session is None:
        return _to_login()
    form = await _form(request)
    if not (await _signer(request)).check_form(session.token, form.get("csrf", "")):
        return _forbidden(request, session, "The form's token is missing or wrong: reload the page and try again.")
    if not session.can_act:
        message = f"Key {session.key.name!r} has role {session.key.role!r}, which may only read."
        return _forbidden(request, session, message)
    page = f"/experiments/{quote(key, safe='')}"
    if action not in views.ACTIONS:
        return _back(page, request, f"Unknown action {action!r}.")
    reason = form.get("reason", "").strip()
    if not reason:
        return _back(page, request, "A reason is required: it goes to the audit log.")
    if len(reason) > _MAX_REASON or "\x00" in reason:
        return _back(page, request, f"The reason must be at most {_MAX_REASON} characters, without NUL.")
    runtime = runtime_of(request)
    try:
        message = await run_in_threadpool(_apply, runtime, key, action, session.actor, reason, form.get("variant"))
    except NotFoundError as exc:
        message = str(exc)
    except ConflictError as exc:
        message = f"Refused: {exc.message}"
    except InvalidInputError as exc:
        message = "Refused: " + "; ".join(f"{field}: {text}" for field, text in exc.problems)
    return _back(page, request, message)


def _apply(runtime: Runtime, key: str, action: str, actor: str, reason: str, variant: str | None) -> str:
    with runtime.changing(key):
        if action == "roll-out":
            moved = experiments.roll_out(runtime.store, key=key, variant=variant or "", actor=actor, reason=reason)
        elif action == "rollback":
            moved = experiments.roll_back(runtime.store, key=key, actor=actor, reason=reason)
        else:
            moved = experiments.change_status(runtime.store, key=key, action=action, actor=actor, reason=reason)
    return f"{views.ACTIONS[action]}: {key} went from {moved.old_status} to {moved.record.status}."
