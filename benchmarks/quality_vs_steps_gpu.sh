#!/usr/bin/env bash
# The MNIST half of benchmarks/quality_vs_steps.py, on a CUDA machine: train the learned-variance
# (L_hybrid) model for as many steps as the fixed-variance preset run took, bound both models on
# the test split (full T-step chain, bits/dim), and draw every configuration's samples.
# Then, where the Inception weights are: python benchmarks/quality_vs_steps.py measure --samples OUT/qvs
#
#   benchmarks/quality_vs_steps_gpu.sh FIXED_RUN STEPS WORK OUT
set -euo pipefail
fixed=$1 steps=$2 work=$3 out=$4
export PYTHONUNBUFFERED=1
python3 -m ddpm train --data mnist --out "$work/mnist_learned" --steps "$steps" --set train.minutes=none \
    --set diffusion.variance=learned_range --set train.device=cuda --quiet
for run in "$fixed" "$work/mnist_learned"; do
    python3 -m ddpm evaluate "$run" --bpd --bpd-only --bpd-batch-size 500 --device cuda --quiet
done
python3 benchmarks/quality_vs_steps.py sample --run "$fixed" --learned-run "$work/mnist_learned" --device cuda \
    --out "$out/qvs"
