"""The dataset map, as the paper's dataset explorer: every example embedded (the bundled
all-MiniLM-L6-v2, 384 dimensions, through the call cache), projected to 2-D with UMAP,
clustered with k-means, and each cluster named by a language model.

k-means runs on the embeddings themselves, not on the 2-D projection (UMAP distorts
distances); the projection is for looking. A cluster is named with the paper's prompt; a
small model often writes no valid JSON list, and then the cluster is named by its most
distinctive words, marked as such. Per cluster: its size, label balance, mean
`label_confidence`, and each evaluated model's % matching where results are given.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mwe import __version__
from mwe.errors import MweError
from mwe.families import by_name
from mwe.io import write_csv, write_json
from mwe.models import Models
from mwe.models.base import Sampling
from mwe.paths import cache_dir
from mwe.prompts import prompt_text
from mwe.records import Dataset
from mwe.run_folder import ResultsFolder, RunFolder

NAMING_PROMPT = ("You are the best data annotator in the world. You come up with highest "
                 "quality labels that best represent the dataset. Please, come up with a ranked "
                 "list of 5 key labels for the following sentences, formatted as a JSON list of "
                 "strings\n\n{sentences}")
NAMING_START = '["'  # the reply is opened as a JSON list, so a small model continues one
SHOWN = 15  # sentences per naming prompt: those nearest the cluster's centre
DEFAULT_NAMER = "llamacpp:smollm2-135m-instruct"
CLUSTER_COLUMNS = ["dataset", "cluster", "name", "named_by", "size", "labels", "majority_share",
                   "mean_label_confidence", "pct_matching"]


@dataclass(frozen=True)
class Point:
    line: int
    text: str
    label: str  # the answer matching the behavior, as shown ("Yes", "(A)")
    confidence: float | None


def points_of(ds: Dataset) -> list[Point]:
    family = by_name(ds.family)
    out = []
    for it in ds.items:
        conf = it.meta.get("label_confidence")
        label = " / ".join(it.answers[i].strip() for i in it.matching) or "-"
        out.append(Point(it.line, family.reader.example_text(it), label,
                         float(conf) if isinstance(conf, int | float) else None))
    return out


NUMBA_MODULES = ("umap", "pynndescent")
_numba_cached = False


def numba_cache_dir() -> Path:
    """Where UMAP's compiled code is kept: NUMBA_CACHE_DIR when the user set it, else a
    folder in mwe's user cache."""
    from numba import config

    user = getattr(config, "CACHE_DIR", "")  # NUMBA_CACHE_DIR, read when numba is imported
    return Path(user) if user else cache_dir() / "numba"


def cache_numba_code() -> int:
    """Turn on numba's disk cache for the umap and pynndescent functions jitted without it,
    which every `mwe map` compiled again (most of its run time on a cached call store);
    returns how many. The cache sits in numba_cache_dir, fixed per function when enabled, so
    numba's global setting is left as it was; one subfolder per version of those packages,
    since numba checks only the source file of the cached function, not code inlined from
    another package. A cache entry is keyed by signature and CPU, not by jit options, so of
    several dispatchers of one Python function (umap's layout step, serial and parallel) only
    the serial one, which a fixed seed uses, is cached. A function numba cannot cache
    (dynamic globals, no source file) stays uncached and is compiled as before."""
    global _numba_cached
    if _numba_cached:
        return 0
    _numba_cached = True
    try:
        from numba import config as numba_config
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # another numba: compile as before
        return 0
    groups: dict[object, list[Dispatcher]] = defaultdict(list)
    for name, module in list(sys.modules.items()):
        if module is not None and name.split(".")[0] in NUMBA_MODULES:
            for d in list(vars(module).values()):
                if isinstance(d, Dispatcher) and d not in groups[d.py_func]:
                    groups[d.py_func].append(d)
    config: Any = numba_config  # numba's stubs do not declare CACHE_DIR
    before, enabled = config.CACHE_DIR, 0
    versions = "_".join(f"{m}-{getattr(sys.modules.get(m), '__version__', '')}"
                        for m in NUMBA_MODULES)
    config.CACHE_DIR = str(numba_cache_dir() / versions)
    try:
        for ds in groups.values():
            if all(isinstance(getattr(d, "_cache", None), NullCache) for d in ds):
                one: Any = min(ds, key=lambda d: bool(d.targetoptions.get("parallel")))
                try:
                    one.enable_caching()
                    enabled += 1
                except Exception:  # no cache locator for its file: left uncached
                    one._cache = NullCache()
    finally:
        config.CACHE_DIR = before
    return enabled


def project(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates: UMAP (cosine, as for sentence embeddings); PCA below 10 points, where
    UMAP's neighbour graph has too little to work with."""
    n = len(vectors)
    if n < 10:
        from sklearn.decomposition import PCA

        k = min(2, n, vectors.shape[1])
        xy = PCA(n_components=k, random_state=seed).fit_transform(vectors) if n > 1 else \
            np.zeros((n, 2))
        if xy.shape[1] < 2:
            xy = np.hstack([xy, np.zeros((n, 2 - xy.shape[1]))])
        return xy, "pca"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap's notes on n_jobs with a fixed random_state
        import umap

        cache_numba_code()
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine",
                            random_state=seed)
        return np.asarray(reducer.fit_transform(vectors)), "umap"


def cluster(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means with at most as many clusters as distinct embeddings (identical rows embed
    identically): more would leave clusters empty, and scikit-learn warns about it."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(np.unique(vectors, axis=0))))
    km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(vectors)
    return np.asarray(km.labels_), np.asarray(km.cluster_centers_)


def parse_names(reply: str, shown: Sequence[str] = ()) -> list[str] | None:
    """The labels from a reply opened with NAMING_START: the first JSON list of strings,
    keeping labels (at most 6 words, each once) that do not merely copy a shown sentence."""
    if '"' not in reply:  # the model never closed the string it was given: prose, not JSON
        return None
    text = NAMING_START + reply
    end = text.find("]")
    candidates = [text[: end + 1]] if end >= 0 else []
    cut = text.rstrip().rstrip(",")
    candidates += [cut + "]", cut + '"]']  # cut off mid-list: close it
    for c in candidates:
        try:
            got = json.loads(c)
        except ValueError:
            continue
        if isinstance(got, list):
            copied = {" ".join(t.lower().split()).strip(" .") for t in shown}
            names: list[str] = []
            for x in got:
                n = " ".join(str(x).split()).strip(" .") if isinstance(x, str) else ""
                if n and len(n.split()) <= 6 and re.search(r"[A-Za-z]{3}", n) and \
                        n.lower() not in copied and \
                        n.lower() not in (m.lower() for m in names):
                    names.append(n)
            if names:
                return names[:5]
    return None


def distinctive_words(texts: Sequence[str], others: Sequence[str], k: int = 5) -> list[str]:
    """Words frequent in the cluster and rarer elsewhere (a fallback name)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    def words(ts: Sequence[str]) -> Counter[str]:
        return Counter(w for t in ts for w in set(re.findall(r"[a-z][a-z'-]{2,}", t.lower()))
                       if w not in ENGLISH_STOP_WORDS)

    inside, outside = words(texts), words(others)
    n_in, n_out = max(len(texts), 1), max(len(others), 1)
    scored = sorted(inside, key=lambda w: (-(inside[w] / n_in - outside[w] / n_out),
                                           -inside[w], w))
    return [w for w in scored if inside[w] >= 2][:k] or scored[:k]


def name_clusters(pts: list[Point], assign: np.ndarray, vectors: np.ndarray,
                  centers: np.ndarray, models: Models, namer: str | None, seed: int
                  ) -> list[tuple[list[str], str]]:
    """(names, named_by) per cluster: the model's JSON list, or distinctive words."""
    out = []
    model = models.open(namer) if namer else None
    for c in range(len(centers)):
        idx = np.flatnonzero(assign == c)
        near = idx[np.argsort(((vectors[idx] - centers[c]) ** 2).sum(1))][:SHOWN]
        names = None
        if model is not None:
            sentences = "\n".join(f"- {pts[i].text}" for i in near)
            prompt = prompt_text(model, "chat", NAMING_PROMPT.format(sentences=sentences),
                                 NAMING_START)
            reply = model.generate([prompt], Sampling(n=1, temperature=0.0, top_p=1.0,
                                                      max_tokens=60, stop=("\n\n",),
                                                      seed=seed))[0][0]
            names = parse_names(reply, [pts[i].text for i in near])
        if names and namer:
            out.append((names, namer))
        else:
            rest = [p.text for j, p in enumerate(pts) if assign[j] != c]
            out.append((distinctive_words([pts[i].text for i in idx], rest), "words"))
    return out


def _result_rows(folder: Path) -> Iterator[tuple[str, tuple[str, int], str, dict[str, Any]]]:
    """(file:line, (source file, line), model label, row) of each row of a results folder's
    rows.jsonl (evaluate, run/results or sweep folders)."""
    files = [f for f in (ResultsFolder(folder).rows, RunFolder(folder).results.rows)
             if f.is_file()]
    if not files:
        raise MweError(f"{folder}: no rows.jsonl (give evaluate, run or sweep folders)")
    with files[0].open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                r = json.loads(line)
                key = (str(Path(r["source"]).resolve()), int(r["line"]))
                who = str(r.get("label") or r["model"])
            except (ValueError, KeyError, TypeError):
                raise MweError(f"{files[0]}:{n}: not a rows.jsonl row of mwe") from None
            yield f"{files[0]}:{n}", key, who, r


def matching_by_row(results: Sequence[Path]) -> dict[tuple[str, int], dict[str, bool]]:
    """(source file, line) -> {model label: matches_behavior} from results folders."""
    out: dict[tuple[str, int], dict[str, bool]] = defaultdict(dict)
    for folder in results:
        for where, key, who, r in _result_rows(folder):
            if "matches_behavior" not in r:
                raise MweError(f"{where}: not a rows.jsonl row of mwe")
            out[key][who] = bool(r["matches_behavior"])
    return out


def _listed(names: Sequence[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most
                                      else "")


def unmatched_results(results: Sequence[Path], maps: Sequence[dict[str, Any]]) -> list[str]:
    """A warning for each results folder none of whose rows is from a mapped dataset (rows
    are matched by source file and line): its models would silently be missing from the
    map's % matching."""
    mapped = {str(Path(m["path"]).resolve()) for m in maps}
    out = []
    for folder in results:
        held: dict[str, None] = {}
        matched = False
        for _, (source, _), _, r in _result_rows(folder):
            matched = matched or source in mapped
            held.setdefault(str(r.get("dataset") or Path(source).stem), None)
        if not matched:
            out.append(f"warning: --results {folder}: none of its rows is from "
                       f"{_listed([m['dataset'] for m in maps])} (rows are matched by their "
                       f"source file and line), so it adds no % matching; "
                       + (f"it holds rows of {_listed(list(held))}" if held else
                          "it holds no rows"))
    return out


def namer_for(ds: Dataset, namer: str | None = None) -> str:
    """The model that names a dataset's clusters: `namer` if given, else the generator its
    card (beside it, when it has one: `read_card` optional) names, else DEFAULT_NAMER."""
    if namer is None:
        card = RunFolder.beside(ds.path).read_card(optional=True) or {}
        generator = card.get("generator")
        spec = generator.get("spec") if isinstance(generator, dict) else None
        namer = spec if isinstance(spec, str) else None
    return namer or DEFAULT_NAMER


def build_map(ds: Dataset, models: Models, namer: str | None, clusters: int = 10, seed: int = 0,
              results: Sequence[Path] = ()) -> dict[str, Any]:
    """Everything the map shows for one dataset, as plain JSON; `namer` None names the
    clusters by their words only."""
    from mwe.models.embedding import CachedEmbedder

    pts = points_of(ds)
    if not pts:
        raise MweError(f"{ds.path}: no rows to map")
    vectors = np.asarray(CachedEmbedder(models.store).embed([p.text for p in pts]), dtype=float)
    assign, centers = cluster(vectors, clusters, seed)
    xy, method = project(vectors, seed)
    names = name_clusters(pts, assign, vectors, centers, models, namer, seed)
    matches = matching_by_row(results)
    source = str(Path(ds.path).resolve())
    evaluated = sorted({m for p in pts for m in matches.get((source, p.line), {})})
    rows = []
    for c, (cluster_names, by) in enumerate(names):
        idx = [i for i in range(len(pts)) if assign[i] == c]
        labels = Counter(pts[i].label for i in idx)
        confs = [c for c in (pts[i].confidence for i in idx) if c is not None]
        pct = {}
        for m in evaluated:
            hits = [matches[(source, pts[i].line)][m] for i in idx
                    if m in matches.get((source, pts[i].line), {})]
            pct[m] = 100.0 * sum(hits) / len(hits) if hits else None
        rows.append({"cluster": c, "name": cluster_names[0] if cluster_names else f"cluster {c}",
                     "names": cluster_names, "named_by": by, "size": len(idx),
                     "labels": dict(sorted(labels.items())),
                     "majority_share": max(labels.values()) / len(idx) if idx else None,
                     "mean_label_confidence": sum(confs) / len(confs) if confs else None,
                     "pct_matching": pct})
    return {"dataset": ds.name, "family": ds.family, "path": ds.path, "projection": method,
            "embedding": "all-MiniLM-L6-v2 (bundled)", "clusters": rows, "models": evaluated,
            "points": [{"line": p.line, "x": round(float(xy[i, 0]), 4),
                        "y": round(float(xy[i, 1]), 4), "cluster": int(assign[i]),
                        "label": p.label, "confidence": p.confidence, "text": p.text}
                       for i, p in enumerate(pts)]}


def write_maps(out: Path, maps: list[dict[str, Any]], settings: dict[str, Any]) -> list[Path]:
    """map.json (everything), clusters.csv (one row per cluster), map.html (interactive,
    offline: the plotting library's JavaScript is inside the file)."""
    from mwe.report.render import render_map_page

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "map.json", {"mwe_version": __version__, "settings": settings,
                                  "maps": maps})
    table = [{"dataset": m["dataset"], **{k: c[k] for k in ("cluster", "name", "named_by",
                                                            "size", "majority_share",
                                                            "mean_label_confidence")},
              "labels": json.dumps(c["labels"], ensure_ascii=False),
              "pct_matching": json.dumps(c["pct_matching"], ensure_ascii=False)}
             for m in maps for c in m["clusters"]]
    write_csv(out / "clusters.csv", table, CLUSTER_COLUMNS)
    render_map_page(out / "map.html", maps)
    return [out / "map.json", out / "clusters.csv", out / "map.html"]
