"""The rate search of ``bench_dataplane.py --pdr``, apart from iperf3 so that it can be tested.

A path's capacity under a loss bound: the highest offered rate at which at most ``loss_pct`` %
is lost at the receiver (FD.io CSIT's "partial drop rate" at 0.5 %, RFC 2544 throughput at 0).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

#: one trial: offered packets per second -> (received packets per second, loss %, extra fields)
Trial = Callable[[float], Tuple[float, float, Dict[str, Any]]]


def search_rate(trial: Trial, loss_pct: float, first: float, upper: float,
                max_trials: int = 8, precision: float = 0.02) -> Dict[str, Any]:
    """Bracket the highest passing offered rate between 0 (taken as passing) and ``upper``
    (taken as failing: the offer that lost more than the bound).

    The first trial offers ``first`` (capped at 0.9 of ``upper``); each next one moves 10 % or
    halfway to the other bound, whichever is nearer, until the bounds are within ``precision``
    of the upper one or ``max_trials`` ran. One trial per rate, as a single run of the path
    gives: a noisy path can pass a rate above one it failed, and the bounds then follow the
    last verdict. The result's ``pps`` is the received rate of the best passing trial (0 if
    none passed).
    """
    lo, hi = 0.0, float(upper)
    rate = min(float(first), hi * 0.9)
    trials: List[Dict[str, Any]] = []
    best: Optional[Dict[str, Any]] = None
    for _ in range(max_trials):
        pps, loss, extra = trial(rate)
        passed = loss <= loss_pct
        t = {"offered_pps": rate, "pps": pps, "loss_pct": loss, "passed": passed, **extra}
        trials.append(t)
        if passed:
            lo = rate
            if best is None or pps > best["pps"]:
                best = t
        else:
            hi = rate
        if hi - lo <= precision * hi:
            break
        rate = min(rate * 1.1, (rate + hi) / 2) if passed else max(rate * 0.9, (lo + rate) / 2)
    return {"loss_bound_pct": loss_pct, "pps": best["pps"] if best else 0.0,
            "loss_pct": best["loss_pct"] if best else None, "limit": "path",
            "bracket_pps": [lo, hi], "trials": trials}
