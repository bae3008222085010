#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one run: the Triton path's tests compiled on the device
# (and the CUDA-only logging, AM-Muon and CUDA graph tests), then the step-time benchmark on
# cuda (AM-Muon against torch.optim.Muon among its implementations), then graph-replayed steps,
# the host time of a step, and a profile. Logs go to $OUT.
#   OUT=gpu-results bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$OUT/gpu.txt"
timeout 240 python -m pytest tests/test_triton.py tests/test_logging.py tests/test_ammuon.py \
    tests/test_cuda_graphs.py -q -p no:cacheprovider \
    > "$OUT/pytest_cuda.log" 2>&1
echo "pytest exit $?"; grep -E "passed|failed|^FAILED|^ERROR" "$OUT/pytest_cuda.log" | tail -20
timeout 100 python benchmarks/triton_configs.py > "$OUT/triton_configs.txt" 2>&1
echo "triton_configs exit $?"; tail -14 "$OUT/triton_configs.txt"
timeout 150 python benchmarks/step_time.py --device cuda --json > "$OUT/step_time_cuda.txt" 2>&1
echo "step_time exit $?"; grep -v '^\[{' "$OUT/step_time_cuda.txt" | tail -60
# Graph-replayed steps (docs/speed.md, CUDA graphs) against torch's, and the two-pass bound.
GRAPHS=torch-adamw-fused-graph,amadamw-fused-graph,torch-sgd-fused-graph,amsgd-fused-graph
timeout 120 python benchmarks/step_time.py --device cuda --impls "$GRAPHS" --skip-extras --json \
    > "$OUT/step_time_cuda_graphs.txt" 2>&1
echo "step_time graphs exit $?"; grep -v '^\[{' "$OUT/step_time_cuda_graphs.txt" | tail -20
# Where the host and device time of AM steps go (50M parameters, 98 tensors).
timeout 60 python - > "$OUT/profile_cuda.txt" 2>&1 <<'PY'
import sys
import torch
import adamem
sys.path.insert(0, "benchmarks")
import step_time
step_time.DEVICE = torch.device("cuda")
for name, factory in (("amadamw", adamem.AMAdamW), ("amsgd", adamem.AMSGD)):
    opt = factory(step_time.make_parameters(step_time.gpt_shapes(5 * 10**7), 0), lr=1e-3)
    for _ in range(5):
        opt.step()
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(10):
            opt.step()
        torch.cuda.synchronize()
    print(name)
    averages = profile.key_averages()
    print(averages.table(sort_by="self_cuda_time_total", row_limit=12))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=12))
PY
echo "profile exit $?"
# Host time of a step: step() calls queued without waiting, at a size (1M) where the device's
# work per step is far shorter than the host's, so the queue never fills.
timeout 60 python - > "$OUT/host_time_cuda.txt" 2>&1 <<'PY'
import sys
import time
import torch
sys.path.insert(0, "benchmarks")
import step_time
step_time.DEVICE = torch.device("cuda")
for impl in ("torch-adamw-fused", "amadamw-fused", "torch-sgd-fused", "amsgd-fused"):
    opt = step_time.IMPLEMENTATIONS[impl](step_time.make_parameters(step_time.gpt_shapes(10**6), 0))
    for _ in range(5):
        opt.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(200):
        opt.step()
    host = (time.perf_counter() - start) / 200
    torch.cuda.synchronize()
    print(f"{impl:<20} host {host * 1e6:7.1f} us per step")
PY
echo "host time exit $?"; cat "$OUT/host_time_cuda.txt"
