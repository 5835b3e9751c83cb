"""Noise schedules: the variances beta_1..beta_T of the forward process, in float64.

Each function returns a NumPy float64 array of length T. Validation and the check
that the chain reaches noise live in :func:`make_betas`, the one entry point.
"""

import math
import warnings

import numpy as np

from .errors import ScheduleError

SCHEDULES = ("linear", "cosine", "quadratic", "sigmoid", "custom")

#: alpha-bar at t=T above this means x_T still carries signal (sqrt(alpha-bar_T) > 0.1).
NOISE_REACHED_ALPHA_BAR = 1e-2


def linear_range(T: int, max_beta: float = 0.999) -> tuple[float, float]:
    """DDPM's 1e-4..0.02 for T=1000, scaled by 1000/T for other T (improved-diffusion),
    each capped at ``max_beta`` (which only very short chains, T < 21, reach)."""
    scale = 1000.0 / T
    return min(scale * 1e-4, max_beta), min(scale * 0.02, max_beta)


def linear_betas(T: int, start: float, end: float) -> np.ndarray:
    """Betas rising linearly from ``start`` to ``end`` (DDPM sec. 4)."""
    return np.linspace(start, end, T, dtype=np.float64)


def quadratic_betas(T: int, start: float, end: float) -> np.ndarray:
    """Betas whose square roots rise linearly (the "quad" schedule of the DDPM code)."""
    return np.linspace(math.sqrt(start), math.sqrt(end), T, dtype=np.float64) ** 2


def sigmoid_betas(T: int, start: float, end: float) -> np.ndarray:
    """Betas following a sigmoid over [-6, 6], scaled to [start, end] (Annotated Diffusion)."""
    s = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, T, dtype=np.float64)))
    return start + (end - start) * s


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal (2021) eq. 17: alpha-bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2),
    beta_t = 1 - alpha-bar(t)/alpha-bar(t-1), clipped at ``max_beta``."""

    def alpha_bar(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return np.array(betas, dtype=np.float64)


def make_betas(
    schedule: str = "linear",
    T: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
    betas=None,
) -> np.ndarray:
    """Betas of a named schedule, validated.

    ``linear``/``quadratic``/``sigmoid`` use ``beta_start``/``beta_end`` when given, else
    DDPM's 1e-4..0.02 scaled by 1000/T. ``cosine`` ignores them. ``custom`` takes
    ``betas`` (any sequence). Raises :class:`ScheduleError` for T < 1 or a beta outside
    (0, 1); warns when alpha-bar_T > 1e-2, i.e. when the chain does not reach noise and
    sampling from N(0, I) would start from the wrong distribution.
    """
    if schedule == "custom" or betas is not None:
        if betas is None:
            raise ScheduleError("schedule 'custom' needs betas: pass a sequence of T values in (0, 1)")
        out = np.asarray(betas, dtype=np.float64).reshape(-1)
        T = len(out)
    else:
        if not isinstance(T, (int, np.integer)) or T < 1:
            raise ScheduleError(f"T must be an integer >= 1, got {T!r}: set diffusion.T to the number of steps")
        default_start, default_end = linear_range(T)
        start = default_start if beta_start is None else float(beta_start)
        end = default_end if beta_end is None else float(beta_end)
        if schedule == "linear":
            out = linear_betas(T, start, end)
        elif schedule == "quadratic":
            out = quadratic_betas(T, start, end)
        elif schedule == "sigmoid":
            out = sigmoid_betas(T, start, end)
        elif schedule == "cosine":
            out = cosine_betas(T)
        else:
            raise ScheduleError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    if T < 1:
        raise ScheduleError("a schedule needs at least one beta (T >= 1)")
    if not np.all(np.isfinite(out)) or np.any(out <= 0) or np.any(out >= 1):
        bad = out[~((out > 0) & (out < 1))][:3]
        raise ScheduleError(
            f"every beta must lie in (0, 1), got {bad.tolist()}: choose beta_start/beta_end in (0, 1)"
        )
    alpha_bar_T = float(np.prod(1.0 - out))
    if alpha_bar_T > NOISE_REACHED_ALPHA_BAR:
        warnings.warn(
            f"the {schedule} schedule with T={T} ends at alpha-bar_T={alpha_bar_T:.3g}: x_T keeps "
            f"{math.sqrt(alpha_bar_T):.2f} of the signal, so sampling from N(0, I) starts from the wrong "
            "distribution; raise beta_end or T (or leave beta_start/beta_end unset to scale them by 1000/T)",
            UserWarning,
            stacklevel=2,
        )
    return out
