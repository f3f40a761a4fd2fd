"""statistics_AUC (AIM §4.4.2): how much a feature interaction alone says about the label, measured without any
model — the yardstick that AIM's Figures 7-8 set the learned α against, and the "top-N by statistics_AUC" baseline
of §4.4.2.

For an interaction q = (q_1, ..., q_p), the predictor of a test row is the click-through rate, in the training
split, of the row's value tuple (x_{q_1}, ..., x_{q_p}) (#clicks / #impressions); statistics_AUC is that
predictor's AUC on the test split. A tuple that never occurs in training gets the overall training CTR (the
paper does not say; it is the predictor's only estimate without data).

It lives in ``report/`` rather than ``search/``: it reads the data splits, not a model, and only the figures and
the comparison use it; the search itself never does.
"""

from __future__ import annotations

import numpy as np

from ctrlab.data.synthetic import auc


def _tuple_ids(columns: list[np.ndarray]) -> np.ndarray:
    """One dense id per distinct value tuple of the given columns (rows = examples). Ids are re-compacted
    after each column, so the running key stays below (#rows x vocabulary) and never overflows int64."""
    key = np.unique(columns[0], return_inverse=True)[1].astype(np.int64)
    for column in columns[1:]:
        values, column_ids = np.unique(column, return_inverse=True)
        key = np.unique(key * len(values) + column_ids, return_inverse=True)[1].astype(np.int64)
    return key


def statistics_auc(
    train_ids: np.ndarray, train_labels: np.ndarray, test_ids: np.ndarray, test_labels: np.ndarray, units: np.ndarray
) -> np.ndarray:
    """statistics_AUC of each interaction (rows of ``units`` [U, p], field indices).

    ``train_ids`` [N, F] and ``test_ids`` [M, F] are the splits' per-field ids, the labels 0/1 ([N], [M]).
    Returns [U] test AUCs. Vectorised over rows (one ``bincount`` per interaction).
    """
    if train_ids.shape[1] != test_ids.shape[1] or units.max(initial=0) >= train_ids.shape[1]:
        raise ValueError(
            f"statistics_auc: train has {train_ids.shape[1]} fields, test {test_ids.shape[1]}, units name field "
            f"{int(units.max(initial=0))}"
        )
    n_train = train_ids.shape[0]
    labels = train_labels.astype(np.float64)
    prior = labels.mean()
    result = np.empty(units.shape[0])
    for u, fields in enumerate(units):
        # ids over train and test together, so a test tuple finds its training counts
        key = _tuple_ids([np.concatenate([train_ids[:, f], test_ids[:, f]]) for f in fields])
        shows = np.bincount(key[:n_train], minlength=key.max() + 1)  # [K]
        clicks = np.bincount(key[:n_train], weights=labels, minlength=key.max() + 1)  # [K]
        ctr = np.divide(clicks, shows, out=np.full(len(shows), prior), where=shows > 0)  # [K]
        result[u] = auc(ctr[key[n_train:]], test_labels)
    return result
