"""Uncertainty math on hand-made ensembles: entropy of the mean, the case score, the review threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsight.engine.sliding_window import sliding_window_probabilities
from medsight.metrics.uncertainty import (
    case_score,
    failure_auroc,
    normalised_entropy,
    review_threshold,
    spearman,
)


def _constant(logits: list[float]):
    """A network giving the same logits at every voxel: a member whose opinion we choose."""
    z = torch.tensor(logits, dtype=torch.float32)

    def net(x: torch.Tensor) -> torch.Tensor:
        return z.view(1, -1, *([1] * (x.ndim - 2))).expand(x.shape[0], -1, *x.shape[2:]).clone()

    return net


def _ensemble_entropy(members: list[list[float]], shape=(1, 9, 10, 11), flips=((),)) -> np.ndarray:
    probs = sliding_window_probabilities(np.zeros(shape, np.float32), [_constant(m) for m in members], (4, 4, 4),
                                         flips=flips)
    return normalised_entropy(probs.numpy())


def test_uniform_members_give_maximal_entropy() -> None:
    h = _ensemble_entropy([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert h.shape == (9, 10, 11) and np.allclose(h, 1.0, atol=1e-5)


def test_agreeing_confident_members_give_zero() -> None:
    h = _ensemble_entropy([[30.0, 0.0, 0.0], [40.0, 0.0, 0.0]], flips=((), (0,), (1, 2)))
    assert np.allclose(h, 0.0, atol=1e-5)


def test_disagreeing_confident_members_give_log2_over_logk() -> None:
    # each member is certain, of a different class: the mean is (1/2, 1/2, 0), the spread is all the uncertainty
    h = _ensemble_entropy([[30.0, 0.0, 0.0], [0.0, 30.0, 0.0]])
    assert np.allclose(h, math.log(2) / math.log(3), atol=1e-5)


def test_entropy_renormalises_float16_and_handles_binary_and_one_class() -> None:
    p = np.array([[0.5, 1.0, 0.0], [0.5, 0.0, 1.0]], dtype=np.float16) * np.float16(0.999)
    assert np.allclose(normalised_entropy(p), [1.0, 0.0, 0.0], atol=1e-4)
    multilabel = np.array([[0.5, 1.0], [0.5, 0.0]])  # two sigmoid outputs per image, two images (K, N)
    assert np.allclose(normalised_entropy(multilabel, binary=True), [1.0, 0.0])
    assert np.all(normalised_entropy(np.ones((1, 4, 4))) == 0)


def test_case_score_is_the_mean_over_the_grown_prediction() -> None:
    u = np.zeros((12, 12), np.float32)
    lab = np.zeros((12, 12), np.uint8)
    assert case_score(u, lab) == 0.0  # confidently empty
    u[0, 0] = 0.7
    assert case_score(u, lab) == pytest.approx(0.7)  # empty and unsure: its most uncertain voxel
    u[0, 0] = 0.0
    lab[4:8, 4:8] = 1  # 16 voxels; grown by 2 (face connectivity): + 16 + 20 = 52 voxels
    u[4, 4:8] = 1.0  # an uncertain boundary row
    assert case_score(u, lab) == pytest.approx(4 / 52)
    assert case_score(u, lab, margin=0) == pytest.approx(4 / 16)
    u[11, 11] = 1.0  # uncertainty far from the prediction does not count
    assert case_score(u, lab) == pytest.approx(4 / 52)
    big = np.zeros_like(lab)
    big[2:10, 4:8] = 1  # the same uncertain row inside a larger structure scores lower
    assert case_score(u, big) < case_score(u, lab)
    with pytest.raises(ValueError):
        case_score(u, lab[:5])


def test_review_threshold_youden_sensitivity_and_no_failures() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    failed = np.array([False, False, False, True, False, True])
    t = review_threshold(scores, failed)
    assert t == pytest.approx(0.3)  # flags 0.4, 0.5, 0.6: both failures, one false alarm (J = 1 - 1/4)
    assert review_threshold(scores, failed, sensitivity=0.5) == pytest.approx(0.5)  # only 0.6 flagged
    assert review_threshold(scores, np.zeros(6, bool)) == pytest.approx(0.6)  # nothing above the validation range
    assert failure_auroc(scores, failed) == pytest.approx(7 / 8)
    assert failure_auroc(scores, np.zeros(6, bool)) is None
    with pytest.raises(ValueError):
        review_threshold(scores, failed[:3])


def test_spearman_ranks_and_undefined_cases() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None
    assert spearman([1, 2], [1, 2]) is None
