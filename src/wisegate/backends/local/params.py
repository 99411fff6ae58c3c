"""The llama.cpp parameters the embedded model is loaded with, one place for the model runner, the
vocabulary and the benchmarks that compare Wisegate with llama-cpp-python called directly.

``repack``: llama.cpp's "extra buffer types" — weights repacked at load for its batched CPU kernels,
and on a CPU that advertises AMX, its AMX tile kernels. A build for the machine's own CPU (the
default: ``GGML_NATIVE``) compiles those AMX kernels in when the CPU advertises AMX, and a virtual
machine may advertise it and still fault on the first tile instruction: llama.cpp's runner then dies
with SIGILL on its first token (seen on a Firecracker VM whose ``/proc/cpuinfo`` lists ``amx_tile``,
with the kernel granting the AMX state). So by default they are off where the CPU advertises AMX and
on elsewhere; an operator whose machine runs AMX sets the backend option ``repack = true``. llama.cpp
has no repacked layout for Q4_1, so for the shipped GGUF this concerns its Q8_0 embedding tensor only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


@cache
def amx_advertised(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU advertises AMX tiles (``amx_tile`` among the flags of ``/proc/cpuinfo``)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        "amx_tile" in line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")
    )


def repack_default(option: object = None) -> bool:
    """The backend's ``repack`` option (``true``/``false``), or when unset: on unless AMX is advertised."""
    if option is None:
        return not amx_advertised()
    if isinstance(option, bool):
        return option
    raise ValueError(f"the local backend's repack option is true or false, not {option!r}")


def model_params(*, repack: bool, vocab_only: bool = False) -> Any:
    """``llama_model_params`` for loading the embedded model."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = repack
    params.vocab_only = vocab_only
    return params
