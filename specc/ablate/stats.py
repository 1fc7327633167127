"""The statistics of the ablation report: which runs failed to train, and which differences
between variants exceed the seed-to-seed spread.

A run that failed to train (a class score that died, a bad start) is not a sample of the
variant's error: averaged in, one such seed moves a mean by ten points and hides the
comparison. It is flagged, listed and left out of the mean instead — never dropped in silence.

Two variants differ beyond the spread when Welch's t-test rejects equal means at the 5% level
(two-sided): |mean_a - mean_b| > t_0.975(df) * sqrt(s_a^2/n_a + s_b^2/n_b), df by
Welch-Satterthwaite. With one seed on either side there is no spread to compare with.
"""

from __future__ import annotations

import math
import statistics

# A run fails to train when its error lies this many robust standard deviations above the
# median of its seeds (MAD * 1.4826 estimates sigma for normal data) and at least this far.
OUTLIER_SIGMAS = 3.0
OUTLIER_MIN_GAP = 0.05  # 5 points of error: seed-to-seed spread of a trained run is far below


def failed_to_train(errors: list[float]) -> list[bool]:
    """Which of a group's runs (same variant and learning rate, one per seed) failed to train:
    far above the group's median. Needs 3 runs or more (with 2 there is no telling which)."""
    if len(errors) < 3:
        return [False] * len(errors)
    median = statistics.median(errors)
    sigma = 1.4826 * statistics.median(abs(e - median) for e in errors)
    gap = max(OUTLIER_SIGMAS * sigma, OUTLIER_MIN_GAP)
    return [e - median > gap for e in errors]


def _t_pdf(x: float, df: float) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf_above_zero(x: float, df: float, steps: int = 2000) -> float:
    """P(0 < T < x) by Simpson's rule (the density is smooth; 2000 steps give 1e-9)."""
    h = x / steps
    total = _t_pdf(0.0, df) + _t_pdf(x, df)
    total += sum((4 if i % 2 else 2) * _t_pdf(i * h, df) for i in range(1, steps))
    return total * h / 3


def t_quantile_975(df: float) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df > 0)."""
    low, high = 0.0, 1.0
    while _t_cdf_above_zero(high, df) < 0.475:
        high *= 2
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf_above_zero(mid, df) < 0.475 else (low, mid)
    return (low + high) / 2


def compare(a: list[float], b: list[float]) -> dict:
    """Welch's test of two variants' errors (one per seed): the difference of means, the
    threshold it must exceed, and the verdict ("exceeds spread", "within spread", or
    "one seed: no spread" where either side has a single run)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    out: dict = {"difference": diff}
    if len(a) < 2 or len(b) < 2:
        return out | {"threshold": None, "verdict": "one seed: no spread"}
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        verdict = "exceeds spread" if diff != 0 else "within spread"
        return out | {"threshold": 0.0, "verdict": verdict}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    threshold = t_quantile_975(df) * se
    return out | {"threshold": threshold, "verdict": "exceeds spread" if abs(diff) > threshold else "within spread"}
