"""The GPU check (tests/gpu/test-gpu.cpp) run on the CPU, on 1 and 2 ranks, for
families whose attention differs (grouped-query, MLA, partial and interleaved
rotary, sinks with a sliding window shorter than the sequence): the staged
communicator's collectives, the decoder expert-parallel with per-source and with
grouped expert GEMMs against the local executor, and generation with a key/value
cache against whole-sequence forward passes. tests/gpu/run.sh runs the same
binary on a GPU.

  /usr/bin/python3 -m pytest -c tests/pytest.ini tests/gpu/test_gpu_check_on_cpu.py \\
      --tool build/smoe-gpu-check --mpirun mpirun --workdir /tmp/gpu-check
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import hf_reference as ref  # noqa: E402

FAMILIES = ["mixtral", "qwen3_moe", "deepseek_v3", "glm4_moe", "ernie4_5_moe", "gpt_oss"]


@pytest.fixture(scope="module", params=FAMILIES)
def model(request, workdir):
    cfg = ref.tiny_config(request.param)
    folder = os.path.join(workdir, request.param)
    ref.save_checkpoint(folder, cfg, ref.random_weights(cfg, seed=11), shards=2)
    return folder


@pytest.mark.parametrize("ranks", [1, 2])
def test_gpu_check_passes_on_the_cpu(model, ranks, tool, on_ranks, run):
    p = run(on_ranks(ranks) + [tool, model, "cpu"], expect=None)
    print(p.stdout)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}"
    assert "FAIL" not in p.stdout and "smoe-gpu-check: passed" in p.stdout, p.stdout[-3000:]
    assert p.stdout.count("ok  ") == 10 * ranks, p.stdout  # every rank prints its checks
