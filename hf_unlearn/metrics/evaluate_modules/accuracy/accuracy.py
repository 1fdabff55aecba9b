"""Top-1 accuracy as an ``evaluate`` metric: ``hf_unlearn.metrics.accuracy``, the function behind report.json's
``accuracy`` (needs ``hf_unlearn`` importable; metric card: README.md beside this file)."""

import datasets
import evaluate

from hf_unlearn.metrics import accuracy

_DESCRIPTION = """
Top-1 accuracy: the fraction of samples whose predicted class is the true class, in [0, 1]. The same
function computes report.json's retain / forget / test accuracies, from the argmax of the model's
softmax outputs on each split. Same inputs and output key as evaluate's own "accuracy" metric.
"""

# Accuracy itself needs no citation; this is the unlearning protocol that reports it on retain / forget / test.
_CITATION = """
@inproceedings{jia2023model,
  title={Model sparsity can simplify machine unlearning},
  author={Jia, Jinghan and Liu, Jiancheng and Ram, Parikshit and Yao, Yuguang and Liu, Gaowen and Liu, Yang and Sharma, Pranay and Liu, Sijia},
  booktitle={Advances in Neural Information Processing Systems},
  year={2023}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class of each sample (the argmax of the model's output).
    references: true class of each sample.
Returns:
    accuracy: the fraction of predictions equal to their reference, in [0, 1].
Example:
    >>> acc = evaluate.load(metric_path("accuracy"))
    >>> acc.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    {'accuracy': 0.75}
"""


class Accuracy(evaluate.Metric):
    """Top-1 accuracy of predicted against true classes."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references) -> dict:
        return {"accuracy": accuracy(predictions, references)}
