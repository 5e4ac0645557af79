"""mwe's results as Inspect logs: one `.eval` file per model and dataset, written with
Inspect's own log API, so that `inspect view`, `read_eval_log` and `samples_df` read an mwe
run as they read an Inspect one.

Each sample is one rows.jsonl row: its input as the model saw it (the prompt text in the
run's format, or chat turns for a server), the answers with their log-probs (log-prob
scoring: also as the output's log-probs, one "token" per answer) or the replies and the
answer read from them (free-text scoring), and one score, `matches_behavior`: C or I, or
Inspect's unscored value with mwe's reason. The eval header names the model (with the
identity mwe's cache keys it by), the format and scoring settings, mwe's version and, for a
`mwe run`, the behavior spec. The results give mwe's own summary (% matching over the scored
rows, its interval, the counts of scored and unscored rows).

Only this module imports inspect_ai (the `inspect` extra), inside its functions.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.errors import MweError
from mwe.families import by_name
from mwe.io import atomic_open
from mwe.models.base import Prompt
from mwe.records import Item

__all__ = ["LogGroup", "Logged", "needs_inspect", "write_logs"]

SCORE = "matches_behavior"
# row fields shown elsewhere in the sample (input, output, score): not repeated as metadata
_SHOWN = ("model", "label", "format", "dataset", "family", "source", "replies")


def needs_inspect() -> None:
    """A clear error, before any work, when Inspect is not installed."""
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        raise MweError("Inspect logs need inspect_ai: pip install 'mwe[inspect]'") from None


@dataclass(frozen=True)
class Logged:
    """One row, with the item it scored and the prompt the model saw."""

    row: dict[str, Any]
    item: Item
    prompt: Prompt


@dataclass
class LogGroup:
    """One model on one dataset: one log."""

    model: str  # the rows' label ("NAME", or "NAME (method)" for a run of two methods)
    identity: dict[str, Any]
    dataset: str
    path: str
    family: str
    fmt: str
    summary: dict[str, Any]
    samples: list[Logged] = field(default_factory=list)


def _messages(prompt: Prompt) -> list[Any]:
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    if isinstance(prompt, str):
        return [ChatMessageUser(content=prompt)]
    kinds = {"user": ChatMessageUser, "assistant": ChatMessageAssistant,
             "system": ChatMessageSystem}
    out = [kinds.get(role, ChatMessageUser)(content=text) for role, text in prompt.messages]
    if prompt.reply:  # the assistant's turn starts with words mwe prefilled
        out.append(ChatMessageAssistant(content=prompt.reply))
    return out


def _chosen(row: dict[str, Any]) -> int | None:
    """The answer the model gave: the likeliest (log-probs), or the commonest read reply."""
    answers = [str(a) for a in row.get("answers") or []]
    lps = row.get("logprobs")
    if isinstance(lps, list) and lps:
        return max(range(len(lps)), key=lambda i: (lps[i], -i))
    extracted = [str(x).strip() for x in row.get("extracted") or [] if x is not None]
    if not extracted:
        return None
    best = Counter(extracted).most_common(1)[0][0]
    stripped = [a.strip() for a in answers]
    return stripped.index(best) if best in stripped else None


def _explain(row: dict[str, Any], answers: list[str], chosen: int | None) -> str:
    lps = row.get("logprobs")
    if isinstance(lps, list) and lps:
        parts = ", ".join(f"{a.strip()} {lp:.3f}" for a, lp in zip(answers, lps))
        text = f"log P: {parts}"
        if row.get("p_matching") is not None:
            text += f"; P(matching) {float(row['p_matching']):.3f}"
        return text
    rules = row.get("rules") or []
    if row.get("unscored") is not None:
        return (f"unscored: {row['unscored']} (rules: {', '.join(map(str, rules))}; "
                f"finish: {', '.join(map(str, row.get('finish') or []))})")
    given = answers[chosen].strip() if chosen is not None else "?"
    return f"the reply read as {given} (rules: {', '.join(map(str, rules))})"


def _score(logged: Logged) -> Any:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score

    row, item = logged.row, logged.item
    answers = [str(a) for a in row.get("answers") or item.answers]
    chosen = _chosen(row)
    explanation = _explain(row, answers, chosen)
    if row.get("unscored") is not None:
        return Score.unscored(reason=str(row["unscored"]), explanation=explanation)
    if isinstance(row.get("matches_behavior"), bool):
        shows = bool(row["matches_behavior"])
    else:  # a family whose rows carry no such field: its target (mwe.family.Scorer.target)
        shows = chosen is not None and chosen in by_name(item.family).scorer.target(item)
    return Score(value=CORRECT if shows else INCORRECT,
                 answer=answers[chosen].strip() if chosen is not None else None,
                 explanation=explanation)


def _output(logged: Logged, model: str) -> Any:
    from inspect_ai.model import (
        ChatCompletionChoice,
        ChatMessageAssistant,
        Logprob,
        Logprobs,
        ModelOutput,
        TopLogprob,
    )

    row = logged.row
    answers = [str(a) for a in row.get("answers") or logged.item.answers]
    lps = row.get("logprobs")
    if isinstance(lps, list) and lps:
        k = _chosen(row)
        assert k is not None
        top = [TopLogprob(token=a, logprob=float(lp)) for a, lp in zip(answers, lps)]
        choice = ChatCompletionChoice(
            message=ChatMessageAssistant(content=answers[k].strip(), model=model),
            stop_reason="stop",
            logprobs=Logprobs(content=[Logprob(token=answers[k], logprob=float(lps[k]),
                                               top_logprobs=top)]))
        return ModelOutput(model=model, choices=[choice])
    replies = [str(r) for r in row.get("replies") or []]
    finish = row.get("finish") or []
    cut = bool(finish) and finish[0] == "length"
    return ModelOutput.from_content(model=model, content=replies[0] if replies else "",
                                    stop_reason="max_tokens" if cut else "stop")


def _sample(logged: Logged, model: str, sample_id: int | str) -> Any:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageAssistant

    row, item = logged.row, logged.item
    answers = [str(a) for a in row.get("answers") or item.answers]
    targets = by_name(item.family).scorer.target(item)
    output = _output(logged, model)
    for choice in output.choices:  # its message's id too: the same run gives the same log
        choice.message = choice.message.model_copy(update={"id": f"{sample_id}.out"})
    messages = _messages(logged.prompt)
    asked = len(messages)
    messages += [ChatMessageAssistant(content=str(r), model=model)
                 for r in row.get("replies") or []] or [output.message]
    # ids from the sample, not random: the same run gives the same log
    messages = [m.model_copy(update={"id": f"{sample_id}.{k}"}) for k, m in enumerate(messages)]
    meta = {"line": item.line, **{k: v for k, v in row.items() if k not in _SHOWN},
            **by_name(item.family).scorer.groups(item)}
    return EvalSample(
        id=sample_id, epoch=1,
        input=logged.prompt if isinstance(logged.prompt, str) else messages[:asked],
        choices=[a.strip() for a in answers],
        target=[answers[i].strip() for i in targets if i < len(answers)],
        messages=messages, output=output, scores={SCORE: _score(logged)}, metadata=meta)


def _metrics(scores: Sequence[Any], summary: dict[str, Any]) -> dict[str, Any]:
    """`accuracy` first, the share of scored samples showing the behavior (for the paper's
    families mwe's % matching, as a fraction), then every finite number of mwe's summary."""
    from inspect_ai.log import EvalMetric

    shown = [s.value for s in scores if s.value in ("C", "I")]
    out = {}
    if shown:
        out["accuracy"] = EvalMetric(name="accuracy", value=shown.count("C") / len(shown))
    for key, value in summary.items():
        if (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value) and key not in out):
            out[key] = EvalMetric(name=key, value=value)
    return out


def _log(group: LogGroup, header: dict[str, Any], created: str) -> Any:
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalResults,
        EvalScore,
        EvalSpec,
        EvalStats,
    )
    from inspect_ai.viewer import ViewerConfig

    model = f"mwe/{group.model}"
    ids: Counter[str] = Counter()
    samples = []
    for logged in group.samples:
        order = logged.row.get("order")
        base = f"{logged.item.line}" if order is None else f"{logged.item.line}-o{order}"
        ids[base] += 1
        sid: int | str = base if ids[base] == 1 else f"{base}-{ids[base]}"
        if isinstance(sid, str) and sid.isdigit():
            sid = int(sid)
        samples.append(_sample(logged, model, sid))
    unscored = sum(1 for s in group.samples if s.row.get("unscored") is not None)
    spec = EvalSpec(
        created=created, task=f"mwe/{group.dataset}", task_version=0,
        task_display_name=group.dataset,
        dataset=EvalDataset(name=group.dataset, location=group.path, samples=len(samples),
                            sample_ids=[s.id for s in samples]),
        model=model, config=EvalConfig(), packages={"mwe": __version__},
        # model-written text is data: the viewer shows it as plain text, never as markup
        viewer=ViewerConfig(trust_content=False),
        metadata={"mwe_version": __version__, "model": group.model,
                  "model_identity": group.identity, "family": group.family,
                  "format": group.fmt, **header})
    results = EvalResults(
        total_samples=len(samples), completed_samples=len(samples),
        scores=[EvalScore(name=SCORE, scorer="mwe", scored_samples=len(samples) - unscored,
                          unscored_samples=unscored,
                          metrics=_metrics([x.scores[SCORE] for x in samples], group.summary),
                          metadata={"summary": group.summary})])
    stats = EvalStats(started_at=created, completed_at=created)
    return EvalLog(status="success", eval=spec, results=results, stats=stats, samples=samples)


def _file_name(group: LogGroup) -> str:
    text = f"{group.dataset}__{group.model}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:180] + ".eval"


def write_logs(out: Path, groups: Iterable[LogGroup], header: dict[str, Any]) -> list[Path]:
    """One .eval log per group in `out`, each written whole or not at all (Inspect writes it
    to a scratch folder; mwe.io puts it in place with the umask's mode)."""
    from inspect_ai.log import write_eval_log

    created = datetime.now(UTC).isoformat(timespec="seconds")
    written: list[Path] = []
    names: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="mwe-inspect-") as scratch:
        for group in groups:
            name = _file_name(group)
            names[name] += 1
            if names[name] > 1:
                name = name[:-5] + f"-{names[name]}.eval"
            tmp = Path(scratch) / name
            write_eval_log(_log(group, header, created), str(tmp), format="eval")
            path = out / name
            with atomic_open(path, "wb") as fh:
                fh.write(tmp.read_bytes())
            tmp.unlink()
            written.append(path)
    return written
