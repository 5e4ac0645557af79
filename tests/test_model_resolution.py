"""Every model a command uses is resolved before its first call, and by --dry-run (issue 24,
item 3): bundled names, folders, hub ids in the local cache, GGUF files, API keys, local
servers. All problems are reported together as one `mwe: error:`, naming each role."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe.errors import MweError
from mwe.models import UnusableModels, check_model, check_models

KEY = "sk-test-DO-NOT-SHOW-4f2a"

# the scenario of the issue: a bundled generator, a discriminator that is no hub id in the
# cache, and a target GGUF that does not exist
ISSUE_SPEC = """\
name: resolution
family: persona
description: is willing to deceive its users to reach its goals
generator: llamacpp:smollm2-135m-instruct
discriminator: hf:no/such-model
targets: [llamacpp:missing.gguf]
generate:
  per_label: 2
  prompt: chat
"""


def home(cwd: Path, **env: str) -> dict[str, str]:
    """The environment of a user in `cwd` whose caches are empty ("" in `env`: unset)."""
    return {"HF_HUB_CACHE": str(cwd / "hf-cache"), "MWE_CACHE_DIR": str(cwd / "mwe-cache"),
            "PYTHONPATH": str(REPO / "src"), **env}


def error_block(res: subprocess.CompletedProcess[str]) -> str:
    """The one `mwe: error:` and the problem lines under it; nothing else on stderr."""
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    starts = [i for i, x in enumerate(lines) if x.startswith("mwe: error:")]
    assert len(starts) == 1, res.stderr
    return "\n".join(lines[starts[0]:])


def issue_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(ISSUE_SPEC, encoding="utf-8")
    return spec


def test_dry_run_names_every_model_that_cannot_be_used(tmp_path: Path, mwe: Mwe) -> None:
    res = mwe(["run", str(issue_spec(tmp_path)), "--out", "out", "--dry-run"], cwd=tmp_path,
              env=home(tmp_path))
    block = error_block(res)
    assert block.startswith("mwe: error: 2 models cannot be used; no model was called:")
    assert "  discriminator 'hf:no/such-model': not a bundled model" in block
    assert "nor a hub id in the local Hugging Face cache" in block
    assert "  targets[0] 'llamacpp:missing.gguf': no file missing.gguf" in block
    assert "generator" not in block  # the bundled generator resolves
    assert "$" not in res.stdout  # no plan priced at $0.0000
    assert not (tmp_path / "out").exists()


def test_a_real_run_stops_before_any_generation_request(tmp_path: Path, mwe: Mwe) -> None:
    res = mwe(["run", str(issue_spec(tmp_path)), "--out", "out"], cache="c.sqlite",
              progress=False, cwd=tmp_path, env=home(tmp_path))
    block = error_block(res)
    assert "discriminator 'hf:no/such-model'" in block
    assert "targets[0] 'llamacpp:missing.gguf'" in block
    assert not (tmp_path / "out" / "generate.json").exists()
    assert not (tmp_path / "out" / "generated.jsonl").exists()
    if (tmp_path / "c.sqlite").exists():  # opened before the check: it must hold nothing
        with sqlite3.connect(tmp_path / "c.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)
            assert db.execute("SELECT COUNT(*) FROM models").fetchone() == (0,)


def test_generate_filter_evaluate_and_sweep_check_first(tmp_path: Path, mwe: Mwe) -> None:
    spec = issue_spec(tmp_path)
    # mwe generate uses only the generator: the bad discriminator and target are not its concern
    text = ISSUE_SPEC.replace("llamacpp:smollm2-135m-instruct", "llamacpp:gone.gguf")
    (tmp_path / "gen.yaml").write_text(text, encoding="utf-8")
    block = error_block(mwe(["generate", "gen.yaml", "--out", "g"], cwd=tmp_path,
                            env=home(tmp_path)))
    assert block == ("mwe: error: generator 'llamacpp:gone.gguf': no file gone.gguf, and not a "
                     "bundled model (smollm2-135m-instruct, gemma3-270m); no model was called")
    # mwe filter: the folder's discriminator, or the one given
    folder = tmp_path / "folder"
    folder.mkdir()
    from mwe.spec import load_spec

    (folder / "spec.json").write_text(json.dumps(load_spec(spec).to_dict()), encoding="utf-8")
    block = error_block(mwe(["filter", str(folder)], cwd=tmp_path, env=home(tmp_path)))
    assert block.startswith("mwe: error: discriminator 'hf:no/such-model': not a bundled")
    block = error_block(mwe(["filter", str(folder), "--discriminator", "hf-rm:gone"],
                            cwd=tmp_path, env=home(tmp_path)))
    assert block.startswith("mwe: error: discriminator 'hf-rm:gone': not a folder, nor a hub id")
    data = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")
    block = error_block(mwe(["evaluate", "-m", "hf:no/such-model", "-m", "llamacpp:a.gguf",
                             "-d", data, "--out", "e"], cwd=tmp_path, env=home(tmp_path)))
    assert "\n  --model 'hf:no/such-model': " in block and "\n  --model 'llamacpp:a.gguf': " in block
    assert not (tmp_path / "e").exists()
    series = tmp_path / "series.yaml"
    series.write_text("name: s\nmodels:\n  - model: llamacpp:smollm2-135m-instruct\n"
                      "  - model: hf:no/such-model\n", encoding="utf-8")
    block = error_block(mwe(["sweep", "--series", str(series), "-m", "openai:gpt-4o-mini",
                             "-d", data, "--out", "s", "--dry-run"], cwd=tmp_path,
                            env=home(tmp_path, OPENAI_API_KEY="", OPENAI_BASE_URL="")))
    assert f"  {series} models[1] 'hf:no/such-model': " in block
    assert "  --model 'openai:gpt-4o-mini': set OPENAI_API_KEY in the environment" in block
    assert "models[0]" not in block


# ---- each backend's check, on good and bad input ------------------------------------------
@pytest.fixture()
def clean_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """mwe's cache folder, empty: a check must write nothing there (no GGUF assembled, no
    model converted)."""
    monkeypatch.setenv("MWE_CACHE_DIR", str(tmp_path / "mwe-cache"))
    return tmp_path / "mwe-cache"


def why(spec: str) -> str:
    with pytest.raises(MweError) as info:
        check_model(spec)
    return str(info.value)


@pytest.mark.parametrize("spec", ["llamacpp:smollm2-135m-instruct", "llamacpp:gemma3-270m",
                                  "hf:smollm2-135m-instruct", "hf:gemma3-270m?dtype=bf16",
                                  "llamacpp:smollm2-135m-instruct?threads=1"])
def test_bundled_names_resolve_without_loading(spec: str, clean_cache: Path) -> None:
    check_model(spec)
    written = [p for p in clean_cache.rglob("*") if p.is_file()] if clean_cache.exists() else []
    assert written == []


def test_bundled_name_of_the_wrong_kind(clean_cache: Path) -> None:
    assert "'all-minilm-l6-v2' is an embedding model, not a language model" in \
        why("llamacpp:all-minilm-l6-v2")
    assert "not a folder, nor a hub id" in why("hf-rm:gemma3-270m")  # no bundled reward model


def test_hf_folders(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    assert why(f"hf:{folder}") == f"the folder {folder} has no config.json (not a transformers model)"
    (folder / "config.json").write_text("{}", encoding="utf-8")
    check_model(f"hf:{folder}")
    check_model(f"hf-rm:{folder}")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(20))
    assert why(f"hf:{gguf}") == f"{gguf} is a file, not a transformers model folder (a GGUF " \
                                "file: use llamacpp:PATH)"


def test_hf_hub_ids_in_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    snapshot = hub / "models--org--tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}", encoding="utf-8")
    (hub / "models--org--tiny" / "refs").mkdir()
    (hub / "models--org--tiny" / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    check_model("hf:org/tiny")
    check_model("hf-rm:org/tiny")
    assert why("hf:org/other") == (
        "not a bundled model (smollm2-135m-instruct, gemma3-270m), a folder, nor a hub id in "
        "the local Hugging Face cache (mwe never downloads weights; fetch them first)")
    assert "nor a hub id" in why("hf:not//a valid id")


def test_gguf_files(tmp_path: Path) -> None:
    assert why(f"llamacpp:{tmp_path / 'missing.gguf'}").startswith(
        f"no file {tmp_path / 'missing.gguf'}, and not a bundled model")
    assert why(f"llamacpp:{tmp_path}") == f"{tmp_path} is a folder, not a GGUF file"
    text = tmp_path / "text.gguf"
    text.write_text("hello, world\n", encoding="utf-8")
    assert "not a GGUF file (starts with b'hello, w'" in why(f"llamacpp:{text}")
    header = tmp_path / "header.gguf"
    header.write_bytes(b"GGUF" + bytes(20))  # starts like one: loading decides the rest
    check_model(f"llamacpp:{header}")


@pytest.fixture()
def listening() -> Iterator[int]:
    """A real HTTP server on a loopback port; it must see no request from a check."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    assert seen == []


@pytest.fixture()
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_openai_keys_and_local_servers(listening: int, closed_port: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert why("openai:gpt-4o-mini") == "set OPENAI_API_KEY in the environment"
    check_model(f"openai:m@http://127.0.0.1:{listening}/v1")  # a local server needs no key
    message = why(f"openai:m@http://alice:pw@127.0.0.1:{closed_port}/v1?scoring=echo")
    assert message == (f"nothing answers at http://127.0.0.1:{closed_port}/v1 (connection "
                       "refused); start the server first, or check the URL")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    check_model("openai:gpt-4o-mini")  # remote: the key is set, the first call does the rest
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://localhost:{closed_port}/v1")
    assert "connection refused" in why("openai:m")
    assert why("openai:m@http://127.0.0.1:1/v1?concurrency=x") == \
        "'concurrency' must be a number, got 'x'"


def test_anthropic_keys_and_local_servers(listening: int, closed_port: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    assert why("anthropic:claude-test") == "set ANTHROPIC_API_KEY in the environment"
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    check_model("anthropic:claude-test")
    check_model(f"anthropic:claude-test@http://127.0.0.1:{listening}")
    assert "connection refused" in why(f"anthropic:claude-test@http://127.0.0.1:{closed_port}")
    assert "samples must be a positive whole number" in why("anthropic:c?samples=0")


def test_all_problems_together_and_keys_never_shown(closed_port: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    local = f"openai:m@http://127.0.0.1:{closed_port}/v1?api_key=pw"
    with pytest.raises(UnusableModels) as info:
        check_models([("generator", "nope:x"), ("discriminator", "llamacpp:smollm2-135m-instruct"),
                      ("targets[0]", "hf:gone/model"), ("targets[1]", "nope:x"),
                      ("targets[2]", local)])
    problems = info.value.problems
    assert problems[0] == ("generator, targets[1] 'nope:x': unknown backend 'nope' (known: "
                           "llamacpp, hf, hf-rm, openai, anthropic)")
    assert problems[1].startswith("targets[0] 'hf:gone/model': not a bundled model")
    assert problems[2].startswith("targets[2] 'openai:m@http://127.0.0.1:")
    assert "api_key=***" in problems[2]
    assert len(problems) == 3
    assert KEY not in str(info.value) and "pw" not in str(info.value)
    # nothing to say: a bundled generator, and the bundled embedding model for near duplicates
    check_models([("generator", "llamacpp:smollm2-135m-instruct")], ["generate.dedup"])
