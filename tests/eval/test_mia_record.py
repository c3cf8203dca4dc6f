"""Member / non-member counts and undefined low-FPR TPRs (``record_attack``, ``eval.roc``)."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnbench.eval.metrics.base import MetricOutput, record_attack
from unlearnbench.eval.roc import attack_stats, undefined_reason


def test_tpr_at_low_fpr_known_values_and_counts():
    """1000 non-members at 0..999, members at 995.5, 989.5 and 500. FPR <= 1 % allows 10
    non-members above the threshold (> 989): TPR 2/3. FPR <= 0.1 % allows one (> 998): TPR 0."""
    non = np.arange(1000.0)
    mem = np.array([995.5, 989.5, 500.0])
    st = attack_stats(mem, non)
    assert st.tpr_at_fpr[0.01] == pytest.approx(2 / 3)  # threshold 989.5: FPR 10/1000
    assert st.tpr_at_fpr[0.001] == pytest.approx(0.0)  # threshold above 995.5 keeps FPR <= 1/1000 only at 999
    out = MetricOutput()
    record_attack(out, "mia/x/pair", st)
    assert out.counts["mia/x/pair/n_members"] == 3 and out.counts["mia/x/pair/n_nonmembers"] == 1000
    assert out.values["mia/x/pair/tpr_at_fpr_0.001"] == 0.0  # defined: 1/1000 is resolvable
    assert "mia/x/pair" in out.curves


def test_tpr_below_one_over_n_nonmembers_is_undefined():
    st = attack_stats(np.array([3.0, 2.0]), np.arange(450.0) / 1000)
    out = MetricOutput()
    record_attack(out, "mia/y/pair", st)
    assert "mia/y/pair/tpr_at_fpr_0.001" not in out.values  # 0.001 < 1/450
    assert out.values["mia/y/pair/tpr_at_fpr_0.01"] == 1.0
    assert out.counts["mia/y/pair/n_nonmembers"] == 450
    assert "mia/y/pair/tpr_at_fpr_0.001" in out.undefined
    assert undefined_reason(0.001, 450).startswith("undefined") and undefined_reason(0.01, 450) is None
    assert undefined_reason(0.001, 1000) is None and undefined_reason(0.5, 0) is not None
