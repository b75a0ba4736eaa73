"""A model against its baseline: the difference of their means with a Welch 95% CI.

The survey's relative claims (LM-ResNet against ResNet at equal depth, Momentum ResNets against
ResNets) compare two of our own rows, not a row with a paper. The pair comes from the record:
``model_meta.baseline`` names the model a run is measured against (the registry's ``baseline``).
The two rows are compared only when everything that decides the number is the same (dataset,
mode, metric, the protocol, the data source and the training precision); otherwise the row says
what differs and gives no difference.

Verdicts, for the primary metrics (lower is better for all of them):

- ``lower than baseline``: the whole 95% CI of ``model - baseline`` lies below 0;
- ``higher than baseline``: it lies wholly above 0;
- ``inconclusive``: the CI contains 0, or a side has fewer than 2 seeds (no CI);
- ``not compared``: the baseline has no row, or none trained under the same settings.
"""

from __future__ import annotations

import math

import pandas as pd

# what must be equal for a difference to mean something: column prefixes and single columns
SAME_SETTINGS = ("protocol.", "data.source", "data.train_size", "data.test_size", "precision.train")
COLUMNS = ["table", "experiment", "mode", "dataset", "model", "settings_hash", "metric", "n", "mean", "baseline",
           "baseline_experiment", "baseline_n", "baseline_mean", "difference", "ci95_low", "ci95_high", "df",
           "verdict", "reason"]


def _settings(runs: pd.DataFrame) -> list[str]:
    return sorted(c for c in runs.columns if c.startswith(SAME_SETTINGS))


def _same(a: pd.Series, b: pd.Series, columns: list[str]) -> list[str]:
    """The columns in which two runs' settings differ (missing equals missing)."""
    out = []
    for c in columns:
        x, y = a.get(c), b.get(c)
        x = None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)
        y = None if y is None or (isinstance(y, float) and math.isnan(y)) else str(y)
        if x != y:
            out.append(c)
    return out


def welch(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int) -> tuple[float, float, float]:
    """The 95% CI of ``mean_a - mean_b`` (Welch, unequal variances) and its degrees of freedom.

    Returns:
        ``(low, high, df)``; with both standard deviations 0 the interval is the difference itself.
    """
    from scipy import stats

    d = mean_a - mean_b
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, math.inf
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return d - half, d + half, df


def baseline_comparisons(summary: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trained summary row whose runs name a ``model_meta.baseline`` (:data:`COLUMNS`).

    Args:
        summary: the trained summary (one row per table, experiment, mode, dataset, model and
            settings hash; ``n``, ``mean``, ``std`` over the runs that finished).
        runs: the trained run rows it was computed from.
    """
    if summary.empty or runs.empty or "model_meta.baseline" not in runs:
        return pd.DataFrame(columns=COLUMNS)
    ok = runs[runs["status"] == "ok"]
    columns = _settings(ok)
    key = ["experiment", "mode", "dataset", "model", "settings_hash"]
    first = ok.drop_duplicates(key).set_index(key)
    out = []
    for _, r in summary.iterrows():
        k = tuple(r[c] for c in key)
        if k not in first.index:
            continue
        own = first.loc[k]
        base = own.get("model_meta.baseline")
        if not isinstance(base, str) or not base.strip():
            continue
        row = {c: r.get(c) for c in ("table", "experiment", "mode", "dataset", "model", "settings_hash", "metric")}
        row.update(baseline=base, n=int(r["n"]), mean=r["mean"])
        cand = summary[(summary["model"] == base) & (summary["dataset"] == r["dataset"])
                       & (summary["mode"] == r["mode"]) & (summary["metric"] == r["metric"])]
        if cand.empty:
            out.append({**row, "verdict": "not compared",
                        "reason": f"no finished run of {base} on {r['dataset']} ({r['mode']} mode)"})
            continue
        differs = {}
        for j, c in cand.iterrows():
            ck = tuple(c[x] for x in key)
            differs[j] = _same(own, first.loc[ck], columns) if ck in first.index else ["(no finished run)"]
        same = [j for j, d in differs.items() if not d]
        if not same:
            diff = sorted({c for d in differs.values() for c in d})
            out.append({**row, "verdict": "not compared",
                        "reason": f"{base}'s runs differ in {', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}"})
            continue
        pick = cand.loc[same].assign(_other=lambda f: f["experiment"] != r["experiment"])
        b = pick.sort_values(["_other", "n", "experiment"], ascending=[True, False, True]).iloc[0]
        row.update(baseline_experiment=b["experiment"], baseline_n=int(b["n"]), baseline_mean=b["mean"],
                   difference=r["mean"] - b["mean"])
        if r["n"] < 2 or b["n"] < 2:
            out.append({**row, "verdict": "inconclusive",
                        "reason": f"a CI needs 2 or more seeds of each (have {int(r['n'])} and {int(b['n'])})"})
            continue
        low, high, df = welch(r["mean"], r["std"], int(r["n"]), b["mean"], b["std"], int(b["n"]))
        row.update(ci95_low=low, ci95_high=high, df=df)
        if high < 0:
            verdict, reason = "lower than baseline", f"the whole 95% CI [{low:.2f}, {high:.2f}] lies below 0"
        elif low > 0:
            verdict, reason = "higher than baseline", f"the whole 95% CI [{low:.2f}, {high:.2f}] lies above 0"
        else:
            verdict, reason = "inconclusive", f"the 95% CI [{low:.2f}, {high:.2f}] contains 0"
        out.append({**row, "verdict": verdict, "reason": reason})
    frame = pd.DataFrame(out, columns=COLUMNS)
    return frame.sort_values(["table", "dataset", "model", "experiment"], kind="stable").reset_index(drop=True)
