"""MIA-efficacy as an ``evaluate`` metric: ``hf_unlearn.metrics.sampled_mia_efficacy``, the function behind
report.json's ``mia`` (needs ``hf_unlearn`` importable; metric card: README.md beside this file)."""

import datasets
import evaluate
import numpy as np

from hf_unlearn.metrics import MIA_FEATURES, sampled_mia_efficacy

_DESCRIPTION = """
MIA-efficacy (Jia et al. 2023, "Model sparsity can simplify machine unlearning"; used by SalUn and RUM):
an RBF-SVC per feature (correctness, confidence, entropy, modified entropy) is trained to tell shadow
members (a seeded sample of retain samples) from shadow non-members (test samples), and the score is the
fraction of target (forget) samples it predicts as non-members. Higher = forget samples look more like
unseen data. The same function computes report.json's "mia" from the retain / test / forget predictions.
"""

_CITATION = """
@inproceedings{jia2023model,
  title={Model sparsity can simplify machine unlearning},
  author={Jia, Jinghan and Liu, Jiancheng and Ram, Parikshit and Yao, Yuguang and Liu, Gaowen and Liu, Yang and Sharma, Pranay and Liu, Sijia},
  booktitle={Advances in Neural Information Processing Systems},
  year={2023}
}
@inproceedings{song2021systematic,
  title={Systematic evaluation of privacy risks of machine learning models},
  author={Song, Liwei and Mittal, Prateek},
  booktitle={30th USENIX Security Symposium},
  year={2021}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    probabilities: softmax output of the evaluated model for each sample (one list of C floats).
    labels: true class of each sample.
    group: "member" (shadow member candidates: the retain set), "nonmember" (shadow non-member: the
        test set) or "target" (the forget set).
    shadow_size (int, optional): how many member rows the attack trains on, a seeded sample; default
        as many as the non-member rows (the pipeline's evaluation.mia_shadow_size).
    features (list of str, optional): which attack features to score; default all four scalar ones.
    seed (int, default 0): seed of the member sample and of the shadow-data shuffle (evaluation.mia_seed).
Returns:
    One MIA-efficacy in [0, 1] per feature, e.g. {"confidence": 0.62, "entropy": 0.58, ...}.
"""

_GROUPS = ("member", "nonmember", "target")


class Mia(evaluate.Metric):
    """MIA-efficacy on the target group from shadow member / non-member groups."""

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

    def _compute(self, probabilities, labels, group, shadow_size=None, features=None, seed: int = 0) -> dict:
        group = np.asarray(group)
        unknown = sorted(set(group.tolist()) - set(_GROUPS))
        if unknown:
            raise ValueError(f"unknown groups {unknown}; use {_GROUPS}")
        labels = np.asarray(labels, dtype=np.int64)
        # Rows of one group share C, so stacking per group is safe even if the column is ragged overall.
        split = {}
        for name in _GROUPS:
            rows = np.flatnonzero(group == name)
            probs = np.asarray([probabilities[i] for i in rows], dtype=np.float64).reshape(len(rows), -1)
            split[name] = (probs, labels[rows])
        return sampled_mia_efficacy(
            *split["member"],
            *split["nonmember"],
            *split["target"],
            shadow_size=shadow_size,
            features=tuple(features or MIA_FEATURES),
            seed=seed,
        )
