"""Image metrics with their protocol and their floors: FID, KID, precision/recall,
density/coverage in each feature space, the classifier's class histogram and confidence,
per-channel colour statistics, and the memorisation check.

Every number is an object ``{"value", "floor", "n", ...}``: ``floor`` is the same metric
for ``n`` real images in place of the samples (see :mod:`ddpm.eval.reference`), so a value
reads against what real data scores at the same sample size. The Inception metrics sit at
the top level (``fid``, ``kid``, ``precision``, ...); the classifier's under
``classifier`` (classifier FID is not Inception FID and is never reported beside it); the
colour statistics under ``color`` (:mod:`ddpm.eval.color`: per channel, with the floor's).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..errors import ConfigError
from . import feature_metrics as fm
from .color import color_statistics
from .conditional import class_accuracy, per_class_fid
from .features import FeatureExtractor, InceptionV3, as_nchw_uint8, inception_weights_path
from .memorization import memorization
from .reference import MIN_PAIRED, Reference, load_split, make_reference, reference_features

FEATURES = ("inception", "classifier")


@dataclasses.dataclass
class Protocol:
    """The conditions of a measurement, recorded beside its numbers."""

    n: int
    data: str
    reference_split: str
    n_reference: int
    floor_source: str
    seed: int = 0  #: seed of the first sample, and of the subsets drawn for floors and KID
    sampler: str | None = None
    steps: int | None = None  #: None: every step of the chain
    spacing: str | None = None
    sigma_min: float | None = None  #: the karras/logsnr grid's range (None: the chain's)
    sigma_max: float | None = None
    eta: float | None = None
    churn: float | None = None
    nfe: int | None = None  #: network evaluations per sample
    clip_denoised: bool | None = None
    precision: str | None = None  #: the network's while sampling: fp32 | bf16 | fp16
    compile: str | None = None  #: torch.compile mode of the network while sampling (none: eager)
    weights: str | None = None  #: ema | raw
    checkpoint_step: int | None = None
    labels: str | None = None  #: the classes a class-conditional model was asked for
    guidance: float | None = None  #: classifier-free guidance scale (1: the conditional model)
    samples_file: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def feature_space_metrics(extractor: FeatureExtractor, samples: torch.Tensor, ref: Reference, seed: int = 0,
                          progress: bool = False, labels: np.ndarray | None = None) -> dict:
    """FID, KID, precision/recall (k=3) and density/coverage (k=5) of ``samples`` against the
    reference in one feature space, each with its floor. Precision, recall, density and coverage
    compare equal-size sets: ``n`` reference images drawn apart from the floor images. FID also
    gives its floor's mean and standard deviation over the floor and its redraws. With the
    samples' requested ``labels``, also FID within each class (``fid_per_class``)."""
    ref_f, floor_f, redraws = reference_features(extractor, ref, progress)
    sample_f = extractor(samples, progress=progress, desc=f"{extractor.name} of samples")
    n = len(sample_f)
    rest = np.setdiff1d(np.arange(len(ref_f)), ref.floor_positions())
    gen = np.random.default_rng(seed)
    real = ref_f[gen.permutation(rest)[:n]]
    common = {"n": n, "n_reference": len(ref_f), "features": extractor.description}
    value, *floors = fm.fids([sample_f, floor_f, *redraws], ref_f)
    out = {"fid": {"value": value, "floor": floors[0], "floor_mean": float(np.mean(floors)),
                   "floor_std": float(np.std(floors, ddof=1)), "floor_draws": len(floors), **common}}
    (k, k_std), (kf, kf_std) = fm.kid(sample_f, ref_f, seed=seed), fm.kid(floor_f, ref_f, seed=seed)
    out["kid"] = {"value": k, "std": k_std, "floor": kf, "floor_std": kf_std, **common,
                  "subsets": 100, "subset_size": min(1000, n, len(ref_f))}
    pr, pr_floor = fm.precision_recall(real, sample_f), fm.precision_recall(real, floor_f)
    dc, dc_floor = fm.density_coverage(real, sample_f), fm.density_coverage(real, floor_f)
    pair = {**common, "n_reference": len(real)}
    out["precision"] = {"value": pr[0], "floor": pr_floor[0], "k": 3, **pair}
    out["recall"] = {"value": pr[1], "floor": pr_floor[1], "k": 3, **pair}
    out["density"] = {"value": dc[0], "floor": dc_floor[0], "k": 5, **pair}
    out["coverage"] = {"value": dc[1], "floor": dc_floor[1], "k": 5, **pair}
    if labels is not None:
        _, floor_data, floor_idx = ref.floor
        ref_labels = torch.cat([d.y for d in ref.parts.values()]).numpy()
        out["fid_per_class"] = per_class_fid(sample_f, labels, ref_f, ref_labels, floor_f,
                                             floor_data.y[floor_idx].numpy(), extractor.description)
    return out


def class_statistics(classifier, samples: torch.Tensor, floor_images: torch.Tensor) -> dict:
    """Class histogram (mode coverage) and mean confidence of the samples and of the floor images."""
    p, pf = classifier.probabilities(samples), classifier.probabilities(floor_images)
    k = p.shape[1]
    return {
        "class_histogram": np.bincount(p.argmax(1), minlength=k).tolist(),
        "floor_class_histogram": np.bincount(pf.argmax(1), minlength=k).tolist(),
        "mean_confidence": {"value": float(p.max(1).mean()), "floor": float(pf.max(1).mean()), "n": len(p)},
    }


def default_features(data_cfg) -> tuple[str, ...]:
    """Inception always; the classifier too for labelled grayscale images (digits, MNIST, ...)."""
    from .reference import load_split

    train = load_split(data_cfg, "train")
    labelled_gray = train.y is not None and train.num_classes >= 2 and train.shape[0] == 1
    return FEATURES if labelled_gray else ("inception",)


def check_request(data_cfg, features, reference_split: str, n: int) -> None:
    """Everything an evaluation needs, checked before any sampling: known feature spaces, the
    Inception weights installed, labels for the classifier, the reference split and the floor."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature space {unknown[0]!r}: choose from {', '.join(FEATURES)}")
    if n < MIN_PAIRED:
        raise ConfigError(f"image metrics need at least {MIN_PAIRED} samples (density and coverage count 5 nearest "
                          f"neighbours), got {n}: pass e.g. --n 1000")
    if "inception" in features:
        inception_weights_path()
    ref = make_reference(data_cfg, reference_split, n)
    first = next(iter(ref.parts.values()))
    if "classifier" in features and (first.y is None or first.num_classes < 2):
        raise ConfigError(f"{data_cfg.name} has no class labels, so it has no classifier features: "
                          "use --features inception")


def evaluate_images(samples, data_cfg, *, features=FEATURES, reference_split: str = "train", seed: int = 0,
                    check_memorization: bool = True, protocol: dict | None = None, extractors: dict | None = None,
                    device="cpu", progress: bool = False, labels=None) -> dict:
    """All image metrics of ``samples`` (uint8, NHWC or NCHW) against the data set ``data_cfg``.

    ``features`` picks the feature spaces (``inception``, ``classifier``); ``extractors`` maps
    extra names to your own :class:`~ddpm.eval.features.FeatureExtractor` objects (reported
    under their names). ``protocol`` adds sampling settings to the recorded protocol.
    ``labels`` are the classes the samples were drawn for (class-conditional models): with
    them come FID per class in every feature space and, with the classifier, the accuracy
    of the samples' classes (:mod:`ddpm.eval.conditional`).
    """
    from .classifier import load_classifier

    x = as_nchw_uint8(samples)
    n = len(x)
    check_request(data_cfg, features, reference_split, n)
    ref = make_reference(data_cfg, reference_split, n, seed)
    first = next(iter(ref.parts.values()))
    if tuple(x.shape[1:]) != first.shape:
        raise ConfigError(f"samples of shape {tuple(x.shape[1:])} (C, H, W) do not match {data_cfg.name}'s "
                          f"{first.shape}: sample at the data's size, or set data.image_size / data.channels")
    proto = Protocol(n, data_cfg.name, reference_split, ref.n, ref.floor_source, seed, **(protocol or {}))
    result = {"kind": "images", "data": data_cfg.name, "protocol": proto.to_dict()}
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (n,) or first.y is None:
            raise ConfigError(f"per-class metrics need one label per sample and a labelled data set; got {labels.shape} "
                              f"labels for {n} samples of {data_cfg.name}")
    if "inception" in features:
        result.update(feature_space_metrics(InceptionV3(device=device), x, ref, seed, progress, labels))
    _, floor_data, floor_idx = ref.floor
    if "classifier" in features:
        clf = load_classifier(data_cfg, progress)
        result["classifier"] = {"label": f"classifier FID/KID ({clf.description})", "accuracy_heldout": clf.accuracy,
                                "n_heldout": clf.n_test, **feature_space_metrics(clf, x, ref, seed, progress, labels),
                                **class_statistics(clf, x, floor_data.x[floor_idx])}
        if labels is not None:
            result["classifier"]["accuracy"] = class_accuracy(clf, x, labels, floor_data.x[floor_idx],
                                                              floor_data.y[floor_idx].numpy())
    for name, extractor in (extractors or {}).items():
        result[name] = feature_space_metrics(extractor, x, ref, seed, progress, labels)
    result["color"] = color_statistics(x, ref)
    if check_memorization:
        heldout = load_split(data_cfg, "test")
        result["memorization"] = memorization(x, load_split(data_cfg, "train").x, None if heldout is None else heldout.x)
    return result
