"""What the tests share besides fixtures: the repository's paths, the `mwe` command and its
runner, and the hf scoring reference. (Fixtures are in conftest.py and used by name; stand-in
models are in fakes.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
SHARED = REPO.parent / "shared" / "anthropic-evals"

# tests that read the released datasets beside the repository skip, with the reason, without them
needs_shared = pytest.mark.skipif(not SHARED.exists(),
                                  reason=f"{SHARED} is not present (released anthropics/evals data)")

# the command as a user of the checkout runs it (the one place that spells it)
MWE = [sys.executable, "-m", "mwe.cli"]

Arg = str | os.PathLike[str]


class Mwe:
    """The `mwe` command, as the `mwe` fixture gives it: in a fresh process (call, `popen`),
    run from the repository, offline; or in this process (`main`), where a test patches mwe."""

    command = MWE

    @staticmethod
    def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment, offline, with `extra` over it; a "" value unsets.
        Read at each call, so that a test's monkeypatch.setenv reaches the command."""
        full = {**os.environ, "HF_HUB_OFFLINE": "1", **(extra or {})}
        return {k: v for k, v in full.items() if v != ""}

    def argv(self, args: Sequence[Arg], cache: Arg | None = None, progress: bool = True
             ) -> list[str]:
        """The command line: `--cache CACHE` and `--no-progress` after the arguments."""
        return [*self.command, *map(str, args), *(["--cache", str(cache)] if cache else []),
                *([] if progress else ["--no-progress"])]

    def __call__(self, args: Sequence[Arg], *, cache: Arg | None = None,
                 progress: bool = True, env: Mapping[str, str] | None = None, cwd: Arg = REPO,
                 timeout: float = 900, ok: bool = False, **kw: Any
                 ) -> subprocess.CompletedProcess[str]:
        """Run to the end; `ok`: assert it succeeded without a traceback."""
        res = subprocess.run(self.argv(args, cache, progress), capture_output=True, text=True,
                             env=self.env(env), cwd=cwd, timeout=timeout, **kw)
        if ok:
            assert res.returncode == 0, res.stderr
            assert "Traceback" not in res.stderr, res.stderr
        return res

    def popen(self, args: Sequence[Arg], *, cache: Arg | None = None, progress: bool = True,
              env: Mapping[str, str] | None = None, cwd: Arg = REPO, **kw: Any
              ) -> subprocess.Popen[Any]:
        """Start it (to kill it part-way); output discarded unless `kw` says otherwise."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(args, cache, progress), env=self.env(env), cwd=cwd,
                                **kw)

    @staticmethod
    def main(args: Sequence[Arg]) -> tuple[int, str, str]:
        """The CLI in this process: (exit status, stdout, stderr)."""
        from mwe import cli

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse's --help and usage errors
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()


def plain_logprob(model: Any, context: str, continuation: str) -> float:
    """The reference for hf scoring: log P(continuation | context) from one plain forward pass
    of that sequence alone (no cache, no mask, the full output layer everywhere)."""
    import torch

    ctx_ids = model._encode_many([context])[0]
    whole = model._encode_many([context + continuation])[0]
    cont = whole[len(ctx_ids):]
    with torch.inference_mode():
        logits = model.model(torch.tensor([whole])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(whole) - len(cont)
    return float(sum(logprobs[start - 1 + k, t] for k, t in enumerate(cont)))


class JsonHandler(BaseHTTPRequestHandler):
    """A stand-in HTTP server's handler: keep-alive, silent, answering JSON."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server for `handler` on a free loopback port, in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class ChatServer:
    """A stand-in OpenAI-compatible chat server: `answer(request body)` gives the reply as
    (content, finish_reason) or (content, finish_reason, reasoning_content); every request
    body is kept in `bodies` (to count calls and read what was sent)."""

    def __init__(self, answer: Any) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.bodies.append(body)
                content, finish, *reasoning = answer(body)
                message = {"role": "assistant", "content": content}
                if reasoning:
                    message["reasoning_content"] = reasoning[0]
                self.send_json(200, {"id": "c", "object": "chat.completion", "created": 0,
                                     "model": body["model"],
                                     "choices": [{"index": 0, "finish_reason": finish,
                                                  "message": message}],
                                     "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                               "total_tokens": 13}})

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def user(self, k: int = -1) -> str:
        """The last user turn of request k."""
        return str(self.bodies[k]["messages"][-1]["content"])

    def close(self) -> None:
        self.server.shutdown()
