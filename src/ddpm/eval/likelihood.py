"""The negative log-likelihood bound of a run, in bits/dim (images) or nats/dim (vectors).

The bound is the whole variational bound of Ho et al. (2020), eq. 5,

    -log p_theta(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0,

with L_T = KL(q(x_T | x_0) || N(0, I)), L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))
and L_0 = -log p_theta(x_0 | x_1): the discretized Gaussian decoder of eq. 13 for 8-bit
images (a probability, so bits/dim comparable with papers), or a Gaussian density for
vector data (a density, reported in nats/dim). Each term is one network evaluation at
x_t ~ q(x_t | x_0), as in the DDPM and improved-diffusion evaluation code; the noise of
example i comes from its own generator seeded from (seed, i), so the result depends
neither on the batch size nor on where an interrupted evaluation was resumed.

:func:`evaluate_bpd` is the entry point; it writes ``bpd.json`` and ``bpd_terms.npz``.
"""

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import is_vector_dataset, load_dataset
from ..diffusion import spaced_timesteps
from ..errors import ConfigError, RunError
from ..samplers.noise import PerSampleNoise

DECODERS = ("discretized-8bit", "gaussian")
SPLITS = ("train", "test")
#: the "test" split of 2-D data is a fresh draw from seed ``cfg.seed + TOY_TEST_SEED_OFFSET``
#: (training draws its points from ``cfg.seed``, so the two never share a seed)
TOY_TEST_SEED_OFFSET = 1_000_000
PARTIAL, TERMS, RESULT = "bpd.partial.npz", "bpd_terms.npz", "bpd.json"
RESPACED_NOTE = (
    "evaluated on a {S}-step chain respaced from T={T} (Nichol & Dhariwal 2021, sec. 4): this is the "
    "bound of the shorter-chain model, a different (usually looser) bound, not an estimate of the T-step one"
)
GAUSSIAN_NOTE = "L_0 is a Gaussian density: nats/dim of continuous data, not comparable with discrete bits/dim"


def evaluate_bpd(run, out_dir, *, split: str = "test", n: int | None = None, steps: int | None = None,
                 batch_size: int = 64, seed: int = 0, decoder: str | None = None, clip: bool | None = None,
                 progress: bool = False) -> dict:
    """The variational bound (DDPM eq. 5) of ``run`` on the first ``n`` examples of ``split``.

    Args:
        run: a :class:`ddpm.runs.Run` (its EMA weights, as :func:`~ddpm.runs.load_run` gives).
        out_dir: where ``bpd.json``, ``bpd_terms.npz`` and, while running, ``bpd.partial.npz`` go.
        split: "train" or "test". For 2-D data "test" is a fresh draw of the true distribution
            from seed ``cfg.seed + TOY_TEST_SEED_OFFSET``, "train" the run's own training points.
        n: number of examples (the first ``n`` of the split; all of it if None).
        steps: evaluate on a chain respaced to this many steps (Nichol & Dhariwal 2021); None:
            the full T-step chain. A respaced chain gives the bound of the shorter-chain model.
            The network still sees original-chain timesteps (through ``timestep_map``).
        batch_size: examples per batch; also the unit of resumption.
        seed: noise of example i comes from the generator seeded from (seed, i).
        decoder: "discretized-8bit" (DDPM eq. 13, bits/dim; 8-bit images only) or "gaussian"
            (a density, nats/dim); None picks by data type.
        clip: clip the predicted x_0 to [-1, 1]; None: the run's sampling default.
        progress: show a progress bar over batches.

    A run of the same request that was interrupted continues from ``bpd.partial.npz``; a
    different request starts over. Returns (and writes to ``bpd.json``)
    ``{"bpd": {"value", "std_error", "n", "unit", ...}, "terms": {"t", "vb_mean"}}``, where
    ``sum(terms.vb_mean) + bpd.prior == bpd.value``.
    """
    cfg, T = run.cfg, run.process.num_timesteps
    _check_int("n", n, 1, None, "pass a positive number of examples, or None for the whole split", none_ok=True)
    _check_int("steps", steps, 1, T, f"pass 1..{T}, or None for the full chain", none_ok=True)
    _check_int("batch_size", batch_size, 1, None, "pass a positive batch size, e.g. 64")
    _check_int("seed", seed, 0, None, "pass a non-negative integer seed")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use 'train' or 'test'")
    decoder = decoder or ("discretized-8bit" if run.is_image else "gaussian")
    if decoder not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r}: choose one of {', '.join(DECODERS)}")
    if decoder == "discretized-8bit" and not run.is_image:
        raise ConfigError("the discretized 8-bit decoder needs 8-bit images, this run models vectors: "
                          "use decoder='gaussian' (nats/dim)")
    clip = (run.is_image if cfg.sample.clip_denoised is None else cfg.sample.clip_denoised) if clip is None else clip

    data = _load_split(cfg, split, n)
    if tuple(data.shape) != tuple(run.shape):
        raise RunError(f"the {split!r} data has shape {tuple(data.shape)}, the run models {tuple(run.shape)}: "
                       "evaluate with the run's own data settings")
    n = len(data) if n is None else n
    if n > len(data):
        raise ConfigError(f"n={n} exceeds the {len(data)} examples of the {split!r} split: pass n <= {len(data)}")
    conditional = bool(cfg.model.class_conditional)
    if conditional and data.y is None:
        raise RunError("the run is class-conditional but the data has no labels: evaluate with labelled data")

    process = run.process if steps is None else run.process.respaced(spaced_timesteps(T, steps))
    S = process.num_timesteps
    key = json.dumps({"data": cfg.data.name, "split": split, "n": n, "T": T, "steps": steps, "decoder": decoder,
                      "variance": process.variance, "clip_denoised": clip, "seed": seed,
                      "checkpoint_step": run.step, "batch_size": batch_size}, sort_keys=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _load_partial(out_dir / PARTIAL, key, S, n, batch_size)

    param = next(iter(run.model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = torch.float32 if device.type == "mps" else torch.float64
    n_batches = math.ceil(n / batch_size)
    start = math.ceil(len(state["total"]) / batch_size)
    for b in tqdm(range(start, n_batches), initial=start, total=n_batches, disable=not progress, unit="batch"):
        idx = torch.arange(b * batch_size, min(n, (b + 1) * batch_size))
        x0, y = data.batch(idx)
        kwargs = {"y": y.to(device)} if conditional else None
        vb, prior = bound_terms(process, run.model, x0.to(device, dtype), [example_seed(seed, int(i)) for i in idx],
                                discrete=decoder == "discretized-8bit", clip=clip, model_kwargs=kwargs)
        state["total"] = np.concatenate([state["total"], (vb.sum(1) + prior).numpy()])
        state["prior"] = np.concatenate([state["prior"], prior.numpy()])
        state["L0"] = np.concatenate([state["L0"], vb[:, 0].numpy()])
        state["vb_sum"] = state["vb_sum"] + vb.sum(0).numpy()
        _save_npz(out_dir / PARTIAL, key=np.array(key), **state)

    return _finish(out_dir, state, process, n, T, decoder, split, seed, clip, run)


@torch.no_grad()
def bound_terms(process, model, x0, seeds, discrete: bool, clip: bool = False, model_kwargs=None):
    """Terms of DDPM eq. 5 per example, in bits/dim: ``vb`` (B, S) with L_0 at index 0 and
    L_{t-1} at t, and the prior L_T (B,). Row i's noise comes from generator ``seeds[i]``."""
    B, S = x0.shape[0], process.num_timesteps
    noise = PerSampleNoise(seeds, x0.shape[1:], S, x0.device, x0.dtype)
    vb = torch.zeros(B, S, dtype=torch.float64)
    for i in reversed(range(S)):
        t = torch.full((B,), i, dtype=torch.long, device=x0.device)
        x_t = process.q_sample(x0, t, noise())
        out = process.vb_terms_bpd(model, x0, x_t, t, discrete, clip, model_kwargs)["output"]
        vb[:, i] = out.double().cpu()
    return vb, process.prior_bpd(x0).double().cpu()


def example_seed(seed: int, index: int) -> int:
    """The seed of example ``index``'s noise: a hash of (seed, index) (NumPy ``SeedSequence``)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0])


# ----------------------------------------------------------------- helpers
def _check_int(name, value, lo, hi, fix, none_ok=False):
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value!r} is invalid: {fix}")


def _load_split(cfg, split: str, n: int | None):
    """The :class:`~ddpm.data.Dataset` of ``split``, without random flips."""
    if not is_vector_dataset(cfg.data.name):
        return load_dataset(replace(cfg.data, split=split, hflip=False))
    if split == "train":  # the run's own training points
        return load_dataset(cfg.data, cfg.seed)
    return load_dataset(replace(cfg.data, split=split, n=n or cfg.data.n), cfg.seed + TOY_TEST_SEED_OFFSET)


def _empty_state(S: int) -> dict:
    return {"total": np.zeros(0), "prior": np.zeros(0), "L0": np.zeros(0), "vb_sum": np.zeros(S)}


def _load_partial(path: Path, key: str, S: int, n: int, batch_size: int) -> dict:
    """The stored progress of the same request, or an empty state (a different request starts over)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return _empty_state(S)
            state = {k: z[k].astype(np.float64) for k in ("total", "prior", "L0", "vb_sum")}
    except (OSError, KeyError, ValueError, EOFError):
        return _empty_state(S)
    done = len(state["total"])
    if state["vb_sum"].shape != (S,) or done > n or (done % batch_size and done != n):
        return _empty_state(S)
    return state


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _finish(out_dir, state, process, n, T, decoder, split, seed, clip, run) -> dict:
    """Means in the reported unit, written to ``bpd_terms.npz`` and ``bpd.json``; the partial file goes."""
    S = process.num_timesteps
    discrete = decoder == "discretized-8bit"
    f = 1.0 if discrete else math.log(2.0)  # vb_terms_bpd works in bits; vectors are reported in nats
    total, prior, l0 = state["total"] * f, state["prior"] * f, state["L0"] * f
    vb_mean = state["vb_sum"] / n * f
    t = np.asarray(process.timestep_map, dtype=np.int64)
    notes = ([RESPACED_NOTE.format(S=S, T=T)] if S < T else []) + ([] if discrete else [GAUSSIAN_NOTE])
    bpd = {
        "value": float(total.mean()),
        "std_error": float(total.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
        "n": n,
        "unit": "bits/dim" if discrete else "nats/dim",
        "decoder": decoder,
        "data": run.cfg.data.name,
        "split": split,
        "steps": S,
        "T": T,
        "prior": float(prior.mean()),
        "L0": float(l0.mean()),
        "variance": process.variance,
        "clip_denoised": clip,
        "seed": seed,
        "checkpoint_step": run.step,
        "weights": getattr(run, "weights", "ema"),
        "notes": notes,
    }
    result = {"bpd": bpd, "terms": {"t": t.tolist(), "vb_mean": vb_mean.tolist()}}
    _save_npz(out_dir / TERMS, t=t, vb_mean=vb_mean, prior=np.float64(bpd["prior"]), total=total,
              prior_per_example=prior, L0_per_example=l0, unit=np.array(bpd["unit"]))
    tmp = out_dir / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out_dir / RESULT)
    (out_dir / PARTIAL).unlink(missing_ok=True)
    return result
