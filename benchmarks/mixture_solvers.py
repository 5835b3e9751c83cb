"""DPM-Solver++(2M) and (3M), as ODE and SDE, on Karras and log-SNR grids, driven by the exact
denoiser of a Gaussian mixture (no network, so every error is the solver's and the grid's).

The mixture is the tests' (``tests/mixture.py``: eight Gaussians of std 0.15 on a circle of radius
2) on the linear 1,000-step schedule. Each cell: 2,000 samples (seeds 0-1999), sliced
Wasserstein-2 against 2,000 fresh data points (seed 1), divided by the data-versus-data floor
(2,000 against 2,000 more, seed 2). The tests hold every sampler to 1.3 times the floor at its
recommended steps. Writes JSON.

    python benchmarks/mixture_solvers.py --out benchmarks/results/mixture_solvers.json
"""

import argparse
import json
import sys
from pathlib import Path

from machine import machine_info, now

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mixture import ring  # noqa: E402  (the tests' exact denoiser: one implementation)

from ddpm.diffusion import GaussianDiffusion  # noqa: E402
from ddpm.eval.toy_metrics import sliced_wasserstein  # noqa: E402
from ddpm.samplers import sample  # noqa: E402
from ddpm.schedules import make_betas  # noqa: E402

SAMPLERS = ("dpm++2m", "dpm++3m")
SPACINGS = ("karras", "logsnr")
ETAS = (0.0, 1.0)
STEPS = (5, 10, 20, 50, 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args()
    process = GaussianDiffusion(make_betas("linear", 1000))
    denoiser = ring(process)
    data = denoiser.sample_data(2000, seed=1).numpy()
    floor = sliced_wasserstein(data, denoiser.sample_data(2000, seed=2).numpy())
    rows = []
    for sampler in SAMPLERS:
        for spacing in SPACINGS:
            for eta in ETAS:
                ratios = {}
                for steps in STEPS:
                    x = sample(process, denoiser, (2,), range(2000), sampler=sampler, steps=steps, spacing=spacing,
                               eta=eta, batch_size=2000, device="cpu").x
                    ratios[steps] = round(sliced_wasserstein(x.numpy(), data) / floor, 3)
                rows.append({"sampler": sampler, "spacing": spacing, "eta": eta, "sw_over_floor": ratios})
                print(sampler, spacing, f"eta={eta}", ratios, flush=True)
    result = {"benchmark": "mixture_solvers", "date": now(), "machine": machine_info(),
              "protocol": {"data": "8 Gaussians (std 0.15) on a circle of radius 2, exact denoiser",
                           "schedule": "linear, T = 1000", "samples": 2000, "sample_seeds": "0-1999",
                           "reference": "2,000 data points, seed 1", "floor": "2,000 data points (seed 2) "
                           "against the reference", "metric": "sliced Wasserstein-2 / floor",
                           "floor_value": floor},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
