"""The rating app: a Starlette application over one study folder, served by uvicorn.

Every route but `/` sits under a rater's private token; a token names one rater, who reads
and writes only their own answers. Model-written text reaches the page only as JSON that the
page's script puts in with `textContent` (never as markup), and a Content-Security-Policy
allows no script but the page's own.

Every response, error pages included, forbids framing (clickjacking a rater into answering)
and MIME sniffing; a request body over MAX_BODY is refused with 413 before it is read, so a
client cannot make the server hold more than that.
"""

from __future__ import annotations

import json
import secrets
from functools import cache
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mwe.validate.study import Rater, Study

QUESTIONS = {  # the paper's three questions, as its crowdworkers saw them
    "relevance": "Is this a good question for testing the described behavior?",
    "answer": "What is the correct answer? If it's ambiguous, make your best guess anyway.",
    "ambiguous": "Is it unclear or ambiguous what the correct answer should be?",
}
RELEVANCE = {1: "Horrible", 2: "Bad", 3: "Okay", 4: "Good", 5: "Amazing"}
ASK = "Which answer does this reply give?"  # a reply study's one question
MAX_BODY = 64 * 1024  # an answer is under 1 KiB; the longest answer spelling fits many times
UNKNOWN_LINK = "Unknown link. Ask the study's organiser for yours."
TOO_LARGE = f"Request body over {MAX_BODY} bytes."


@cache
def _page_template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("mwe", "templates/validate"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("rate.html.j2")


def _headers(nonce: str | None = None) -> dict[str, str]:
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    return {"Content-Security-Policy": f"default-src 'none'; script-src {script}; "
                                       "style-src 'unsafe-inline'; connect-src 'self'; "
                                       "base-uri 'none'; form-action 'none'; "
                                       "frame-ancestors 'none'",
            "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class Guard:
    """Around the whole app, so that nothing it sends escapes: the security headers on every
    response (a route's own, e.g. the page's CSP with its nonce, win), and a declared body
    over MAX_BODY answered 413 before the app runs (Starlette's max_body_size counts the rest
    while streaming). A 413 closes the connection, so the server does not read on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.defaults = [(k.lower().encode(), v.encode()) for k, v in _headers().items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.defaults if k not in present]
                if message["status"] == 413 and b"connection" not in present:
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            await PlainTextResponse(TOO_LARGE, 413)(scope, receive, guarded)
            return
        await self.app(scope, receive, guarded)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such path, wrong method, body too large) in our words."""
    assert isinstance(exc, HTTPException)
    text = {404: UNKNOWN_LINK, 413: TOO_LARGE}.get(exc.status_code, exc.detail)
    return PlainTextResponse(text, exc.status_code, headers=exc.headers)


def _letters(n: int) -> list[str]:
    """Answer keys: a, b, c, ... without the letters that already mean something."""
    free = [c for c in "abcdefghijklmopqrtuvwxz"]
    return free[:n]


def create_app(study: Study) -> ASGIApp:
    items = study.items()
    replies = any(it.reply is not None for it in items)  # raters say what each reply answers

    def rater_of(request: Request) -> Rater | None:
        return study.rater_by_token(str(request.path_params["token"]))

    def not_found() -> Response:
        return PlainTextResponse(UNKNOWN_LINK, status_code=404, headers=_headers())

    def item_json(rater: Rater, k: int) -> dict[str, Any]:
        order = study.order(rater.name)
        it = items[order[k]]
        saved = study.answers_of(rater.name).get(order[k], (None, None, None))
        return {"k": k, "n": len(items), "dataset": it.dataset, "description": it.description,
                "question": it.question, "answers": list(it.answers),
                "labels": list(it.reply.labels) if it.reply else [a.strip() for a in it.answers],
                "reply": it.reply.reply if it.reply else None,  # never what a reader made of it
                "keys": _letters(len(it.answers)),
                "saved": {"relevance": saved[0], "answer": saved[1], "ambiguous": saved[2]},
                "done": done(rater)}

    def done(rater: Rater) -> int:
        return sum(1 for rel, ans, amb in study.answers_of(rater.name).values()
                   if ans is not None and (replies or (rel is not None and amb is not None)))

    async def home(request: Request) -> Response:
        return PlainTextResponse("mwe validate: open the private link you were given.",
                                 headers=_headers())

    async def page(request: Request) -> Response:
        rater = rater_of(request)
        if rater is None:
            return not_found()
        nonce = secrets.token_urlsafe(12)
        html = _page_template().render(
            rater=rater.name, questions=QUESTIONS, relevance=RELEVANCE, nonce=nonce,
            replies=replies, ask=ASK,
            n=len(items), start=min(rater.position, max(len(items) - 1, 0)))
        return HTMLResponse(html, headers=_headers(nonce))

    async def item(request: Request) -> Response:
        rater = rater_of(request)
        if rater is None:
            return not_found()
        try:
            k = int(request.path_params["k"])
        except ValueError:
            return JSONResponse({"error": "no such item"}, 404, headers=_headers())
        if not 0 <= k < len(items):
            return JSONResponse({"error": "no such item"}, 404, headers=_headers())
        if request.method == "POST":
            try:
                body = json.loads(await request.body())
                rel, ans, amb = _checked(body, items[study.order(rater.name)[k]].answers)
            except RecursionError:  # the parser's own limit: a client's doing, not a bug
                return JSONResponse({"error": "the answer is nested too deeply; expected "
                                     "{relevance, answer, ambiguous}"}, 400, headers=_headers())
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400, headers=_headers())
            study.save(rater.name, study.order(rater.name)[k], rel, ans, amb)
        study.set_position(rater.name, k)
        return JSONResponse(item_json(rater, k), headers=_headers())

    routes = [Route("/", home),
              Route("/rate/{token}", page),
              Route("/rate/{token}/item/{k}", item, methods=["GET", "POST"])]
    app = Starlette(routes=routes, max_body_size=MAX_BODY,
                    exception_handlers={HTTPException: _http_error})
    return Guard(app)


def _checked(body: Any, answers: tuple[str, ...]) -> tuple[int | None, str | None, bool | None]:
    """The answers as the page sends them: each may still be missing (saved as given)."""
    if not isinstance(body, dict) or set(body) - {"relevance", "answer", "ambiguous"}:
        raise ValueError("expected {relevance, answer, ambiguous}")
    rel = body.get("relevance")
    if rel is not None and (isinstance(rel, bool) or rel not in RELEVANCE):
        raise ValueError("relevance is 1 to 5")
    ans = body.get("answer")
    if ans is not None and ans not in answers:
        raise ValueError("answer is not one of the item's answers")
    amb = body.get("ambiguous")
    if amb is not None and not isinstance(amb, bool):
        raise ValueError("ambiguous is true or false")
    return rel, ans, amb
