"""The data-quality rules of a dataset spec in vectorized pandas: the benchmark's reference point.

The same rules as the Great Expectations suite (`mlassets.ml.validation.build_suite`), counted the
way GE counts them: a column-map rule ignores missing values, and `unique` counts every row whose
value occurs more than once. Returns offending rows per rule, keyed like the suite's checks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def check(df: pd.DataFrame, spec) -> dict[str, int]:
    """Offending rows per check name (0 everywhere: the table passes)."""
    out = {
        "columns_match_spec": int(list(df.columns) != list(spec.columns)),
        "min_row_count": int(len(df) < spec.min_rows),
        "not_null": 0,
        "unique": 0,
        "values_in_range": 0,
        "values_allowed": 0,
    }
    for name, col in spec.columns.items():
        if name not in df:
            continue
        s = df[name]
        if not col.nullable or name == spec.id:
            out["not_null"] += int(s.isna().sum())
        if col.unique or name == spec.id:
            out["unique"] += int((s.duplicated(keep=False) & s.notna()).sum())
        if col.min is not None or col.max is not None:
            v = s.to_numpy()
            bad = np.zeros(len(v), dtype=bool)  # NaN compares False: missing values pass
            if col.min is not None:
                bad |= v < col.min
            if col.max is not None:
                bad |= v > col.max
            out["values_in_range"] += int(bad.sum())
        if col.values is not None:
            out["values_allowed"] += int((~s.isin(col.values) & s.notna()).sum())
    return out
