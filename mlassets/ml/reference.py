"""The drift reference: what the production model was trained on, kept in its parts.

A retrained version learns from the spec's source plus the batches that landed since the
version before. Its stored reference (a seeded sample of its training rows,
`drift.reference_sample`) marks each row's part in `ORIGIN`: `SOURCE` or `BATCHES`. Recent rows
are compared with the part they resemble most, and drift only when they differ from every part:
after a retrain on drifted batches, rows like the source are rows the model was trained on (the
mixture of both parts would call them drifted), and rows like the drifted batches too. A version
trained on the source alone, or registered before parts were kept, has one part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ORIGIN = "_origin"
SOURCE = "source"
BATCHES = "landed batches"
WHOLE = "training rows"  # the one part of a reference without parts
# A part with fewer sampled rows is too small to test against on its own: it stays in the
# reference as a whole (with 500 rows, KS tells shifts of about a tenth of a standard deviation).
MIN_PART_ROWS = 500


def origins(index: pd.Index, source_rows: int | None) -> pd.Categorical | None:
    """Each training row's part, from its position in `raw_data` (the source's rows come first,
    the landed batches' after them; splits keep those positions as the index). None when the
    version was trained on the source alone (or its record does not say)."""
    if source_rows is None:
        return None
    codes = (np.asarray(index) >= source_rows).astype(np.int8)
    if not codes.any():
        return None
    return pd.Categorical.from_codes(codes, [SOURCE, BATCHES])


def parts(reference: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The reference's parts by name (its columns without `ORIGIN`); one part, `WHOLE`, when it
    has no parts, or when any of them is smaller than `MIN_PART_ROWS`."""
    if ORIGIN not in reference:
        return {WHOLE: reference}
    whole = reference.drop(columns=ORIGIN)
    groups = {
        str(name): whole[(reference[ORIGIN] == name).to_numpy()]
        for name in pd.unique(reference[ORIGIN])
    }
    if len(groups) < 2 or min(len(g) for g in groups.values()) < MIN_PART_ROWS:
        return {WHOLE: whole}
    return groups
