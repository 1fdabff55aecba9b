"""The threshold membership-inference attacks as an ``evaluate`` metric: ``hf_unlearn.metrics.threshold_attacks``,
the function behind report.json's ``attacks.loss`` / ``confidence`` / ``entropy`` (needs ``hf_unlearn`` importable;
metric card: README.md beside this file)."""

import datasets
import evaluate
import numpy as np

from hf_unlearn.metrics import threshold_attacks

_DESCRIPTION = """
Three membership-inference attacks that threshold one score of the model's softmax output: the loss (log p_y),
the top-1 confidence (log max p) and minus the entropy. Each is judged by its error rates on known members (the
forget set: trained on) and non-members (the test set: never trained on): ROC AUC (0.5 = chance) and the true-
positive rate at 1% and 0.1% false positives. The same function computes report.json's "attacks".
"""

_CITATION = """
@inproceedings{carlini2022membership,
  title={Membership inference attacks from first principles},
  author={Carlini, Nicholas and Chien, Steve and Nasr, Milad and Song, Shuang and Terzis, Andreas and Tram{\\`e}r, Florian},
  booktitle={2022 IEEE Symposium on Security and Privacy (SP)},
  year={2022}
}
@inproceedings{yeom2018privacy,
  title={Privacy risk in machine learning: Analyzing the connection to overfitting},
  author={Yeom, Samuel and Giacomelli, Irene and Fredrikson, Matt and Jha, Somesh},
  booktitle={2018 IEEE 31st Computer Security Foundations Symposium (CSF)},
  year={2018}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    probabilities: softmax output of the evaluated model for each sample (one list of C floats).
    labels: true class of each sample.
    group: "member" (trained on: the forget set in a report) or "nonmember" (never trained on: the test set).
Returns:
    For each attack ("loss", "confidence", "entropy"): {"auc": ..., "tpr_at_fpr": {"0.01": ..., "0.001": ...}}.
"""

_GROUPS = ("member", "nonmember")


class Attacks(evaluate.Metric):
    """ROC AUC and TPR at low FPR of the loss, confidence and entropy attacks, members against non-members."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "probabilities": datasets.Sequence(datasets.Value("float64")),
                    "labels": datasets.Value("int64"),
                    "group": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, probabilities, labels, group) -> dict:
        group = np.asarray(group)
        unknown = sorted(set(group.tolist()) - set(_GROUPS))
        if unknown:
            raise ValueError(f"unknown groups {unknown}; use {_GROUPS}")
        labels = np.asarray(labels, dtype=np.int64)
        split = []
        for name in _GROUPS:
            rows = np.flatnonzero(group == name)
            probs = np.asarray([probabilities[i] for i in rows], dtype=np.float64).reshape(len(rows), -1)
            split += [probs, labels[rows]]
        return threshold_attacks(*split)
