#!/usr/bin/env bash
# The CUDA checks in one run, for a machine with an NVIDIA GPU and this project's dependencies installed.
#
#     benchmarks/gpu_check.sh            # logs and JSON under ${OUT:-gpu_check}/
#     DEVICE=cpu benchmarks/gpu_check.sh # a dry run of the script's plumbing on a machine without a GPU
#
# 1. tests of the CUDA paths: the selective scan (mamba_ssm kernels where they import, else skipped), the
#    history cache, learned demand on CUDA (cached decoder vs the whole model, bfloat16 autocast, copy
#    groups) and the host-device copies that wait for no queued work;
# 2. benchmarks/mamba_scan.py on CUDA (the pure-PyTorch scans against the reference and the kernels);
# 3. benchmarks/env_throughput.py on CUDA: the shipped model and the full-size decoder layout, 64 copies,
#    then the full size at 256 copies (steps/s, shopper-visits/s, step / forward ratio, beyond_forward:
#    the host's ceiling, mamba_backend);
# 4. benchmarks/env_host_floor.py: the weekly step with the model's work stubbed out, on this machine's CPU
#    (what the host alone allows, to tell a host-bound run from a device-bound one);
# 5. benchmarks/world_models.py at full size on CUDA (training and inference rates under bfloat16).
# Each step has its own time limit, so one that hangs costs only its own minutes; the script goes on. The
# limits add up to 570 s, under the device tool's 600 s a command (expected: 3-4 minutes on an H200).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
device="${DEVICE:-cuda}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, installed or not

python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
    2>&1 | tee "$out/device.txt"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null
  echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"; } | tee -a "$out/device.txt"
timeout 120 python3 -m pytest -q -rs -p no:cacheprovider tests/world_model/models/test_mamba.py \
    tests/world_model/models/test_history_cache.py tests/retailsim_env/test_demand.py tests/retailsim_env/test_transfer.py 2>&1 | tee "$out/tests.log"
timeout 50 python3 benchmarks/mamba_scan.py --devices "$device" --repeats 3 > "$out/mamba_scan.json" 2> "$out/mamba_scan.err"
timeout 180 python3 benchmarks/env_throughput.py --sizes shipped,full --layouts decoder --device "$device" --num-envs 64 \
    --steps 5 --warmup 2 > "$out/env_throughput.jsonl" 2> "$out/env_throughput.err"
timeout 120 python3 benchmarks/env_throughput.py --sizes full --layouts decoder --device "$device" --num-envs 256 \
    --steps 5 --warmup 2 > "$out/env_throughput_256.jsonl" 2> "$out/env_throughput_256.err"
timeout 20 python3 benchmarks/env_host_floor.py --num-envs 64,256 > "$out/env_host_floor.jsonl" 2> "$out/env_host_floor.err"
timeout 80 python3 benchmarks/world_models.py --size full --device "$device" --steps 10 > "$out/world_models.json" \
    2> "$out/world_models.err"
for file in "$out"/*.json "$out"/*.jsonl; do echo "== $file"; head -c 4000 "$file"; echo; done
