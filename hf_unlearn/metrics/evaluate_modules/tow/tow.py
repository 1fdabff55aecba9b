"""Tug-of-War (ToW) as an ``evaluate`` metric: ``hf_unlearn.metrics.tug_of_war``, the function behind
report.json's ``tow`` (needs ``hf_unlearn`` importable; metric card: README.md beside this file)."""

import datasets
import evaluate
import numpy as np

from hf_unlearn.metrics import tug_of_war

_DESCRIPTION = """
Tug-of-War (ToW, Zhao et al. 2024, "What makes unlearning hard and what to do about it"):
prod over retain/forget/test of (1 - |acc_unlearned - acc_retrained|), accuracies as fractions.
1 means the unlearned model matches the retrained-from-scratch model exactly. The same function computes
report.json's "tow" from a model's and the reference's accuracies.
compute(signed=True) gives the signed variant used by the official sharp-unlearn code.
"""

_CITATION = """
@inproceedings{zhao2024makes,
  title={What makes unlearning hard and what to do about it},
  author={Zhao, Kairan and Kurmanji, Meghdad and B{\\u{a}}rbulescu, George-Octavian and Triantafillou, Eleni and Triantafillou, Peter},
  booktitle={Advances in Neural Information Processing Systems},
  year={2024}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    unlearned_retain, unlearned_forget, unlearned_test: accuracies of the unlearned model, in [0, 1].
    retrained_retain, retrained_forget, retrained_test: accuracies of the retrained model, in [0, 1].
    One row per comparison (e.g. one per seed).
    signed (bool, default False): use the official code's signed differences.
Returns:
    tow: mean ToW over the rows.
    tow_per_row: the ToW of each row.
Example:
    >>> tow = evaluate.load(metric_path("tow"))
    >>> tow.compute(unlearned_retain=[0.98], unlearned_forget=[0.5], unlearned_test=[0.9],
    ...             retrained_retain=[0.99], retrained_forget=[0.4], retrained_test=[0.92])
"""

_SIDES = ("unlearned", "retrained")
_SPLITS = ("retain", "forget", "test")


class Tow(evaluate.Metric):
    """ToW of unlearned against retrained accuracies."""

    def _info(self) -> evaluate.MetricInfo:
        columns = {f"{side}_{split}": datasets.Value("float64") for side in _SIDES for split in _SPLITS}
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(columns),
        )

    def _compute(self, signed: bool = False, **columns) -> dict:
        n_rows = len(columns["unlearned_retain"])
        if n_rows == 0:
            raise ValueError("ToW needs at least one row of accuracies")
        per_row = [
            tug_of_war(
                {split: columns[f"unlearned_{split}"][i] for split in _SPLITS},
                {split: columns[f"retrained_{split}"][i] for split in _SPLITS},
                signed=signed,
            )
            for i in range(n_rows)
        ]
        return {"tow": float(np.mean(per_row)), "tow_per_row": per_row}
