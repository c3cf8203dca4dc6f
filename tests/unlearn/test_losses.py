"""The distillation losses (SCAR, SCRUB, Bad Teacher) against an independent implementation:
KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) per row with scipy's ``rel_entr``, averaged over the rows
(PyTorch's ``batchmean``), on Hypothesis-generated logits of any batch size and class count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import rel_entr, softmax

from unlearnbench.unlearn.losses import distill_kl, kl_from_logits, kl_from_probs


def _kl_reference(student: np.ndarray, teacher_probs: np.ndarray) -> float:
    q = softmax(student.astype(np.float64), axis=1)
    return float(rel_entr(teacher_probs.astype(np.float64), q).sum(axis=1).mean())


@st.composite
def logit_pairs(draw):
    b, c = draw(st.integers(1, 6)), draw(st.integers(2, 7))
    finite = st.floats(-20, 20, allow_nan=False, width=32)
    return draw(arrays(np.float32, (b, c), elements=finite)), draw(arrays(np.float32, (b, c), elements=finite))


@given(pair=logit_pairs(), t=st.sampled_from([1.0, 2.0, 4.0]))
def test_losses_equal_the_textbook_kl(pair, t):
    s, te = pair
    p = softmax(te.astype(np.float64), axis=1)
    ref = _kl_reference(s, p)
    got_probs = float(kl_from_probs(torch.from_numpy(s), torch.from_numpy(p.astype(np.float32))))
    got_logits = float(kl_from_logits(torch.from_numpy(s), torch.from_numpy(te)))
    assert got_probs == pytest.approx(ref, rel=1e-4, abs=1e-4)
    assert got_logits == pytest.approx(ref, rel=1e-4, abs=1e-4)
    # SCRUB's DistillKL: T² · KL(softmax(teacher / T) ‖ softmax(student / T))
    ref_t = t * t * _kl_reference(s / t, softmax(te.astype(np.float64) / t, axis=1))
    assert float(distill_kl(torch.from_numpy(s), torch.from_numpy(te), t)) == pytest.approx(ref_t, rel=1e-4, abs=1e-4)


def test_kl_is_over_classes_and_averaged_over_rows():
    """A hand case where summing over the wrong axis, or dividing by the wrong count, shows:
    row 0 equal (KL 0), row 1 teacher certain of class 0 against a uniform student (KL log 3)."""
    student = torch.zeros(2, 3)
    teacher = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    assert float(kl_from_probs(student, teacher)) == pytest.approx(np.log(3) / 2, rel=1e-6)
    assert float(kl_from_logits(student, torch.log(teacher.clamp_min(1e-30)))) == pytest.approx(np.log(3) / 2, rel=1e-5)
