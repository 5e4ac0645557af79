"""How many CPU threads the local backends (llama.cpp, torch) use, and how they wait.

One setting for every local backend, in order of precedence:

    llamacpp:smollm2-135m-instruct?threads=2   an option on the model string
    MWE_THREADS=2                              the environment
    the default                                physical cores this process may run on

Why physical cores and not ``os.cpu_count()``: the matrix kernels of llama.cpp and torch keep
a core's vector units busy, so a second hyperthread on the same core adds little, and every
extra thread adds a wait at each of the hundreds of barriers in one forward pass. llama.cpp's
own programs default to physical cores as well. The count is that of the cores in the CPU
affinity mask (``taskset``, cpusets), capped by a cgroup CPU quota (``docker --cpus``), since
``os.cpu_count()`` sees the whole host in both cases. Why not fewer: a run alone is the common
case, and on 2 cores llama.cpp scores 1.8x as fast with 2 threads as with 1; with the short
spin below, two runs side by side then share the cores fairly. To run N evaluations at once,
give each cores/N threads (MWE_THREADS=1 on 2 cores): none then waits for another.

The thread count is not part of a model's cache identity, so a run with another setting
still hits the cache: llama.cpp's log-probs are bit for bit the same with 1, 2 or 3 threads
(tests/test_threads.py); torch's move in the last bits (up to ~1e-5 between 1 and 2
threads), as they already do with the batch a row happens to be scored in.

Why threads must not spin long: llama.cpp's CPU backend is built with OpenMP, whose threads
wait at each of the hundreds of barriers in a forward pass by spinning for up to 300,000
pause instructions (~20 ms) before they sleep. When two runs share the cores, a spinning
thread burns the time slice that the thread it waits for needs: two runs side by side on a
2-core machine each took 5-17x as long as one alone. `quiet_openmp_spin` shortens the spin
(see SPINCOUNT for the measurements); sleeping at once instead would cost a run alone
nearly half its speed, since waking a thread takes far longer than the typical wait.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import parse_qsl

from mwe import settings
from mwe.errors import MweError

ENV = settings.env_name("threads")
OPTION = "threads"


def _positive(value: str, what: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise MweError(f"{what} must be a positive whole number of threads, got {value!r}")
    return int(text)


def split_name(backend: str, name: str) -> tuple[str, int | None]:
    """`name` without its `?threads=N` option, and N (None when absent).

    The option is taken off the name before anything else sees it, so that the weights, the
    cache identity and error messages are those of the plain name. A path that exists as
    written keeps any '?' it contains.
    """
    if "?" not in name or Path(os.path.expanduser(name)).exists():
        return name, None
    base, _, query = name.rpartition("?")
    threads: int | None = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != OPTION:
            also = "; hf also takes ?dtype=bf16" if backend == "hf" else ""
            raise MweError(f"model '{backend}:{name}': unknown option '{key}' "
                           f"(a local model takes ?{OPTION}=N{also})")
        threads = _positive(value, f"model '{backend}:{name}': option {OPTION}")
    if not query or threads is None:
        raise MweError(f"model '{backend}:{name}': expected ?{OPTION}=N after the name")
    if not base:
        raise MweError(f"model '{backend}:{name}' names no model before '?'")
    return base, threads


def from_env() -> int | None:
    """MWE_THREADS as a number, None when unset or empty; anything else is an error."""
    return settings.current().threads


def _cgroup_cpus() -> float | None:
    """CPUs allowed by a cgroup quota (v2 cpu.max or v1 cfs_quota_us), None when unlimited."""
    paths: list[str] = ["/"]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers in ("", "cpu") or "cpu" in controllers.split(","):
                paths.insert(0, path)
    except (OSError, ValueError):
        pass
    root = Path("/sys/fs/cgroup")
    for path in paths:
        rel = path.lstrip("/")
        try:
            quota, period = (root / rel / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError):
            pass
        for v1 in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            try:
                q = int((root / v1 / rel / "cpu.cfs_quota_us").read_text())
                p = int((root / v1 / rel / "cpu.cfs_period_us").read_text())
                return None if q <= 0 else q / p
            except (OSError, ValueError):
                pass
    return None


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthreads counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores: set[str] = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        for fname in ("core_cpus_list", "thread_siblings_list"):
            try:
                cores.add(f"{(topo / fname).read_text().strip()}")
                break
            except OSError:
                continue
        else:
            cores.add(f"cpu{cpu}")  # no topology (not Linux, or hidden): one core per CPU
    return max(1, len(cores))


def default_threads() -> int:
    """Physical cores available to this process, capped by a cgroup CPU quota."""
    n = physical_cores()
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return n


def resolve(option: int | None = None) -> int:
    """The thread count to use: the model-string option, else MWE_THREADS, else the default."""
    if option is not None:
        return option
    env = from_env()
    return env if env is not None else default_threads()


# Spins before a waiting OpenMP thread sleeps: ~60 us here, instead of libgomp's 300,000
# (~20 ms). Measured on 2 cores, 300 rows, SmolLM2 through llama.cpp (seconds alone / each of
# two side by side): 300,000: 24 / 126; 10,000: 22 / 137; 3,000: 18 / 66; 1,000: 22 / 46;
# 100: 29 / 40; 0 (sleep at once): 41 / 50. 1,000 keeps a run alone as fast as before and
# two side by side take twice as long, the fair share, instead of five to six times.
SPINCOUNT = "1000"


def quiet_openmp_spin() -> None:
    """Make OpenMP threads sleep soon at a barrier rather than spin, unless the user chose.

    Sets GOMP_SPINCOUNT (GNU OpenMP, which llama.cpp's CPU backend and torch's CPU wheels
    use) when neither it nor OMP_WAIT_POLICY is set. Call it before llama.cpp or torch is
    first imported: libgomp reads its environment once, when it is loaded; later calls
    change nothing (and the setting reaches child processes too).
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT


def set_torch_threads(n: int) -> None:
    """Make torch's CPU kernels use `n` threads (a process-wide setting).

    Intra-op threads do the work of each matrix product. The inter-op pool only runs
    TorchScript forks, which mwe does not use; it is set too so that it never exceeds the
    chosen count, but torch allows that only before the pool starts, so a refusal is ignored.
    """
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        if torch.get_num_interop_threads() != n:
            torch.set_num_interop_threads(n)
    except RuntimeError:
        pass
