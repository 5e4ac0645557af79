"""Batch mode of the HTTP backends (`?batch=1`): OpenAI's Batch API and Anthropic's Message
Batches, at the providers' batch prices, for runs that can wait (up to 24 hours a batch).

The requests of one call (a chunk of `MWE_SCORE_CHUNK` questions that the cache wrapper
scores, or one generation call) become one batch per endpoint; a call larger than the
provider's limits is cut into several at fixed places. Every request line has a custom id
that is a digest of its own inputs, and every batch a key that is a digest of its lines.

Durability: the batch id is committed to the ledger (`mwe.ledger`, a table in the cache's
SQLite file) as soon as the provider answers the submission, before anything waits on it,
together with the custom ids it holds. A run killed at any point and started again finds,
for every request it still needs, the batch that holds it, and polls that batch instead of
submitting anew: a batch is paid for once. (The one gap: a kill in the milliseconds between
the provider's answer to the submission and the commit; a submission whose answer is lost
on the network is not retried, but stops with an error saying so.) A submission that the
server answered with an error, or whose connection never opened, is retried.

Results are handed over as they are read, each request as soon as all its lines are in, so
the cache commits them at once. Lines that failed in a way worth retrying (5xx, 429, an
expired or cancelled batch, a line with no result) go into a new batch, at most
`batch_retries` times (default 3); lines that fail for good (a 400, say) stop the run with
one error naming them, as do lines still failing after the last retry. Lines that failed
are forgotten by the ledger, so the next run submits them afresh.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mwe.errors import MweError
from mwe.ledger import DONE, GIVEN_UP, Ledger
from mwe.models.base import Prompt, prompt_json
from mwe.store import canonical, digest

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
OPTIONS = {"batch", "poll", "batch_retries"}  # poll and batch_retries: mwe.models.http


def batch_flag(options: dict[str, str], backend: str) -> bool:
    """`batch=1` turns batch mode on, `batch=0` (the default) off."""
    raw = options.get("batch", "0")
    if raw not in ("0", "1"):
        raise MweError(f"{backend}: batch must be 0 or 1, got {raw!r}")
    return raw == "1"


@dataclass
class Group:
    """One request of a call (a question to score, a prompt to sample): its lines' bodies,
    all sent to one endpoint."""

    endpoint: str
    bodies: list[dict[str, Any]]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = digest({"endpoint": self.endpoint, "bodies": self.bodies})

    def custom_id(self, j: int) -> str:
        # Anthropic allows 64 characters of [A-Za-z0-9_-]
        return f"{self.key[:48]}-{j}"


@dataclass
class Status:
    """A batch's status, as the provider reports it."""

    state: str
    done: int = 0
    total: int = 0
    ended: bool = False  # no more results will come
    failure: str = ""  # the batch failed as a whole (its input was refused): why
    handle: Any = None  # the provider's own (OpenAI: the output and error file ids)


@dataclass
class Outcome:
    """One line's result: the response (ok) or why it failed, and whether to try again."""

    ok: bool
    value: Any = None
    reason: str = ""
    retry: bool = True


class Provider(Protocol):
    batch_max_lines: int
    batch_max_bytes: int

    async def batch_submit(self, endpoint: str, lines: Sequence[tuple[str, dict[str, Any]]]
                           ) -> str: ...

    async def batch_status(self, batch_id: str) -> Status: ...

    async def batch_results(self, batch_id: str, status: Status) -> list[tuple[str, Outcome]]: ...


def requests(n: int) -> str:
    return f"{n} request" + ("" if n == 1 else "s")


def say(text: str) -> None:
    """A progress line on stderr, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


def _gone(exc: BaseException) -> bool:
    """The provider no longer knows the batch or its results (a 404)."""
    return getattr(exc, "status", None) == 404


@dataclass
class _Active:
    key: str
    batch_id: str
    lines: set[str]
    state: str
    shown: tuple[str, int, int] | None = None


class BatchRun:
    """Submits, records, polls and reads the batches of one call."""

    def __init__(self, provider: Provider, ledger: Ledger, spec: str, poll: float, retries: int,
                 describe: Callable[[int], str] | None = None,
                 report: Callable[[str], None] = say) -> None:
        self.provider = provider
        self.ledger = ledger
        self.spec = spec
        self.poll = poll
        self.retries = retries
        self.describe = describe or (lambda g: f"request {g + 1}")
        self.report = report
        self.submitted: list[str] = []  # batch ids this run submitted

    def say(self, text: str) -> None:
        self.report(f"{self.spec}: {text}")

    async def run(self, groups: Sequence[Group], on_group: Callable[[int, list[Any]], None]
                  ) -> None:
        """on_group(g, responses of group g's lines, in order) as soon as all are in."""
        self.on_group = on_group
        self.members: dict[str, list[int]] = {}
        for g, group in enumerate(groups):
            self.members.setdefault(group.key, []).append(g)
        self.values: dict[str, list[Any]] = {}
        self.missing: dict[str, int] = {}
        self.where: dict[str, tuple[str, int]] = {}  # custom id -> (group key, line)
        self.lines: dict[str, tuple[str, dict[str, Any]]] = {}  # custom id -> endpoint, body
        for key, gs in self.members.items():
            group = groups[gs[0]]
            self.values[key] = [None] * len(group.bodies)
            self.missing[key] = len(group.bodies)
            if not group.bodies:
                for g in gs:
                    on_group(g, [])
            for j, body in enumerate(group.bodies):
                cid = group.custom_id(j)
                self.where[cid] = (key, j)
                self.lines[cid] = (group.endpoint, body)
        self.pending = set(self.lines)
        self.tries: dict[str, int] = {}

        # resume: every line already in a batch the ledger knows is read from that batch
        active: list[_Active] = []
        held: dict[str, set[str]] = {}
        for cid, key in self.ledger.lines(list(self.lines)).items():
            held.setdefault(key, set()).add(cid)
        attached: set[str] = set()
        for key, cids in held.items():
            entry = self.ledger.get(key)
            if entry is None or entry.state == GIVEN_UP:
                continue
            active.append(_Active(key, entry.batch_id, cids, entry.state))
            attached |= cids
            for cid in cids:
                self.tries[cid] = 1
            self.say(f"batch {entry.batch_id} found in the cache's ledger ({requests(len(cids))}"
                     f", last seen {entry.state}): polling it, not submitting again")
        active += await self._submit([c for c in self.lines if c not in attached])

        interval = min(1.0, self.poll)
        while active:
            for a in list(active):
                await self._poll(a, active)
            if active:
                await asyncio.sleep(interval)
                interval = min(2 * interval, self.poll)
        assert not self.pending, "every line was answered or raised"

    async def _submit(self, cids: Sequence[str]) -> list[_Active]:
        """Submit lines as batches (one per endpoint, cut at the provider's limits), each
        recorded in the ledger before anything waits on it."""
        by_endpoint: dict[str, list[str]] = {}
        for cid in cids:
            by_endpoint.setdefault(self.lines[cid][0], []).append(cid)
        out: list[_Active] = []
        for endpoint, all_lines in by_endpoint.items():
            parts: list[list[str]] = [[]]
            size = 0
            for cid in all_lines:
                n = len(canonical(self.lines[cid][1])) + 120
                if parts[-1] and (len(parts[-1]) >= self.provider.batch_max_lines
                                  or size + n > self.provider.batch_max_bytes):
                    parts.append([])
                    size = 0
                parts[-1].append(cid)
                size += n
            for part in parts:
                lines = [(cid, self.lines[cid][1]) for cid in part]
                key = digest({"endpoint": endpoint, "lines": [[c, b] for c, b in lines]})
                batch_id = await self.provider.batch_submit(endpoint, lines)
                self.ledger.record(key, batch_id, part)  # before any wait
                self.submitted.append(batch_id)
                for cid in part:
                    self.tries[cid] = self.tries.get(cid, 0) + 1
                self.say(f"batch {batch_id} submitted ({requests(len(part))} to {endpoint})")
                out.append(_Active(key, batch_id, set(part), "submitted"))
        return out

    def _take(self, cid: str, value: Any) -> None:
        self.pending.discard(cid)
        key, j = self.where[cid]
        self.values[key][j] = value
        self.missing[key] -= 1
        if self.missing[key] == 0:
            for g in self.members[key]:
                self.on_group(g, list(self.values[key]))

    async def _poll(self, a: _Active, active: list[_Active]) -> None:
        try:
            status = await self.provider.batch_status(a.batch_id)
        except MweError as exc:
            if not _gone(exc):
                raise
            active.remove(a)
            self.ledger.set_state(a.key, GIVEN_UP)
            lost = sorted(a.lines & self.pending)
            self.say(f"batch {a.batch_id} is no longer known to the provider; submitting its "
                     f"{requests(len(lost))} again")
            self._check_tries({c: "batch no longer available" for c in lost})
            active += await self._submit(lost)
            return
        shown = (status.state, status.done, status.total)
        if shown != a.shown:
            counts = f": {status.done} of {status.total} done" if status.total else ""
            self.say(f"batch {a.batch_id} {status.state}{counts}")
            a.shown = shown
        if status.state != a.state:
            self.ledger.set_state(a.key, status.state)
            a.state = status.state
        if not status.ended:
            return
        active.remove(a)
        if status.failure:
            self.ledger.set_state(a.key, GIVEN_UP)
            raise MweError(f"{self.spec}: batch {a.batch_id} failed: {status.failure}")
        try:
            outcomes = await self.provider.batch_results(a.batch_id, status)
        except MweError as exc:
            if not _gone(exc):
                raise
            outcomes = []  # the results expired (after about 30 days): run the lines again
        failed: dict[str, str] = {}
        fatal: dict[str, str] = {}
        for cid, outcome in outcomes:
            if cid not in a.lines or cid not in self.pending:
                continue  # another call's line, or one already answered
            if outcome.ok:
                self._take(cid, outcome.value)
            elif outcome.retry:
                failed[cid] = outcome.reason or "failed"
            else:
                fatal[cid] = outcome.reason or "failed"
        for cid in sorted(a.lines & self.pending):
            if cid not in failed and cid not in fatal:
                failed[cid] = f"no result ({status.state})"
        # done before the retry is recorded: a retry with the same lines reuses the key
        self.ledger.set_state(a.key, DONE)
        if fatal:
            self.ledger.forget(fatal)
            raise self._failure(f"failed in batch {a.batch_id}", fatal)
        if not failed:
            return
        self._check_tries(failed)
        reasons = ", ".join(f"{r} ({n})" for r, n in Counter(failed.values()).most_common(3))
        self.say(f"{len(failed)} of {requests(len(a.lines))} in batch {a.batch_id} failed or "
                 f"expired ({reasons}); retrying them in a new batch")
        active += await self._submit(sorted(failed))

    def _check_tries(self, failed: dict[str, str]) -> None:
        over = {c: r for c, r in failed.items() if self.tries.get(c, 0) > self.retries}
        if over:
            self.ledger.forget(over)
            raise self._failure(f"still failed after {self.retries + 1} batches "
                                f"(batch_retries={self.retries})", over)

    def _failure(self, what: str, failed: dict[str, str]) -> MweError:
        reasons = ", ".join(f"{r} ({n})" for r, n in Counter(failed.values()).most_common(3))
        named: list[str] = []
        for cid in sorted(failed, key=lambda c: self.members[self.where[c][0]][0])[:3]:
            key, j = self.where[cid]
            g = self.members[key][0]
            named.append(f"{self.describe(g)}, line {j + 1}: {failed[cid]}")
        return MweError(f"{self.spec}: {len(failed)} batch request(s) {what}: {reasons}; "
                        + "; ".join(named))


def run_batches(provider: Provider, groups: Sequence[Group],
                on_group: Callable[[int, list[Any]], None], *, spec: str, ledger: Ledger | None,
                poll: float, retries: int, finalize: Callable[[], Awaitable[None]],
                describe: Callable[[int], str] | None = None) -> BatchRun:
    """Run a call's groups through batches, in a new event loop (as the backends' other
    calls); `finalize` closes the client inside that loop."""
    runner = BatchRun(provider, ledger or Ledger(":memory:", ""), spec, poll, retries, describe)

    async def main() -> None:
        try:
            await runner.run(groups, on_group)
        finally:
            await finalize()

    if groups:
        asyncio.run(main())
    return runner


def describe(prompt: Prompt, n: int = 60) -> str:
    """A request named by its prompt's start, on one line, for an error."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt_json(prompt))
    flat = " ".join(text.split())
    return "the request for " + repr(flat if len(flat) <= n else flat[: n - 3] + "...")
