"""Samples of a class-conditional model measured per class: how often the data set's own
classifier reads the requested class, and FID within each class, each beside its floor, the
same numbers for real images of that class (Ho & Salimans 2022 judge guidance by such pairs:
sample quality against how well samples follow their class)."""

from __future__ import annotations

import numpy as np

from . import feature_metrics as fm


def class_accuracy(classifier, samples, labels: np.ndarray, floor_images, floor_labels: np.ndarray) -> dict:
    """Share of samples the classifier assigns to their requested class, overall and per class; the
    floor is the same share for real images with their true labels (the classifier's accuracy)."""
    probabilities = classifier.probabilities(samples)
    predicted, classes = probabilities.argmax(1), range(probabilities.shape[1])
    floor_predicted = classifier.probabilities(floor_images).argmax(1)

    def per_class(pred, truth):
        return [float(np.mean(pred[truth == c] == c)) if np.any(truth == c) else None for c in classes]

    return {"value": float(np.mean(predicted == labels)), "floor": float(np.mean(floor_predicted == floor_labels)),
            "n": len(labels), "per_class": per_class(predicted, labels),
            "floor_per_class": per_class(floor_predicted, floor_labels)}


def per_class_fid(sample_f: np.ndarray, labels: np.ndarray, ref_f: np.ndarray, ref_labels: np.ndarray,
                  floor_f: np.ndarray, floor_labels: np.ndarray, features: str) -> dict:
    """FID of each class's samples against the reference images of that class, beside the floor: the
    floor images of that class (about as many) against the same reference images."""
    out = {}
    for c in np.unique(labels):
        ref, floor = ref_f[ref_labels == c], floor_f[floor_labels == c]
        samples = sample_f[labels == c]
        if len(ref) < 2 or len(samples) < 2:
            continue
        out[str(int(c))] = {"value": fm.fid(samples, ref), "floor": fm.fid(floor, ref) if len(floor) >= 2 else None,
                            "n": len(samples), "n_floor": len(floor), "n_reference": len(ref), "features": features}
    return out
