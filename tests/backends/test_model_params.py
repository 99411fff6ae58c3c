"""The embedded model's llama.cpp parameters: llama.cpp's AMX and repacked weight buffers are off by
default where the CPU advertises AMX (a VM that advertised it killed the runner with SIGILL on its
first token), on elsewhere, and an operator's ``repack`` option decides when set."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisegate.backends.local import LocalBackend
from wisegate.backends.local.params import amx_advertised, model_params, repack_default

_FLAGS = "flags\t\t: fpu vme sse sse2 avx avx2 avx512f"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text(f"processor\t: 0\nmodel name\t: x\n{flags}\n\nprocessor\t: 1\n{flags}\n")
    return path


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert amx_advertised(_cpuinfo(tmp_path, _FLAGS + " amx_bf16 amx_tile amx_int8")) is True
    assert amx_advertised(_cpuinfo(tmp_path, _FLAGS + " amx_bf16")) is False  # tiles are the flag
    assert amx_advertised(tmp_path / "missing") is False


def test_the_option_decides_and_unset_follows_the_cpu() -> None:
    assert repack_default(True) is True and repack_default(False) is False
    assert repack_default() is (not amx_advertised())
    with pytest.raises(ValueError, match="true or false"):
        repack_default("yes")


def test_the_parameters_carry_it() -> None:
    assert model_params(repack=False).use_extra_bufts is False
    params = model_params(repack=True, vocab_only=True)
    assert params.use_extra_bufts is True and params.vocab_only is True


def test_the_runner_is_started_with_it() -> None:
    assert LocalBackend("local", {"repack": True}).runner_config()["repack"] is True
    assert LocalBackend("local", {}).runner_config()["repack"] is (not amx_advertised())
