#!/usr/bin/env bash
# What the project measures on a CUDA machine, in one run: the engine's and env's tests on the GPU, the engine's
# throughput (engine_throughput.py --device cuda) and meta-training's cost (meta_train_cost.py --device cuda).
# Needs the pure-Python dependencies that machine lacks as wheels in .whl/ (pettingzoo, gymnasium,
# farama-notifications, torchjd); writes its logs to $OUT (or ./cuda_report).
# Usage: bash benchmarks/cuda_report.sh            # everything
#        bash benchmarks/cuda_report.sh learned    # the learned agents only: their tests on the GPU, their play and
#                                                  # meta-training cost, and a one-minute meta-training run on CUDA
set -u
what=${1:-all}
export PYTHONUNBUFFERED=1
out=${OUT:-cuda_report}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
if [ "$what" = learned ]; then
    MTG_TEST_DEVICE=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_learned.py \
        tests/test_env.py -k "batched_form or full_episode or base_steps or same_for_every or at_rest or trunk_move" \
        > "$out/tests_learned_cuda.txt" 2>&1
    tail -6 "$out/tests_learned_cuda.txt"
    timeout 120 python3 benchmarks/meta_train_cost.py --device cuda 2>&1 | tee "$out/meta_train_cuda.txt"
    timeout 120 python3 benchmarks/meta_train_cost.py --device cuda --suite regression --games 1024 2>&1 \
        | tee "$out/meta_train_regression_cuda.txt"
    # The rule's step compiled (Triton kernels; EngineDriver(compile=True)): small games are launch-bound on a GPU.
    timeout 240 python3 benchmarks/meta_train_cost.py --device cuda --suite quadratic --agents learned_mlp \
        learned_step --compile 2>&1 | tee "$out/meta_train_quadratic_compiled_cuda.txt"
    timeout 150 python3 -c "from mtg_env.cli import main; main()" meta-train --agent learned_mlp --suite quadratic \
        --device cuda --budget 60s --out "$out/meta_train_run" 2>&1 | tr '\r' '\n' | tail -4 | tee "$out/meta_train_run.txt"
    exit 0
fi
MTG_TEST_DEVICE=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_engine.py \
    tests/test_env.py > "$out/tests_cuda.txt" 2>&1
tail -14 "$out/tests_cuda.txt"
timeout 200 python3 benchmarks/engine_throughput.py --device cuda --rounds 3 2>&1 | tee "$out/engine_cuda.txt"
if [ -f benchmarks/meta_train_cost.py ]; then
    timeout 150 python3 benchmarks/meta_train_cost.py --device cuda 2>&1 | tee "$out/meta_train_cuda.txt"
fi
