"""The model card of an unlearned model (`huggingface_hub.ModelCard`, `ModelCardData`, `EvalResult`), written by
``hf-unlearn push`` / export (`hf_unlearn.hub`) and by ``trainer.create_model_card`` / ``push_to_hub``
(`hf_unlearn.trainers.model_card`): metadata, model-index, the ``hf_unlearn`` block and the text (docs/hub.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .hub_ids import is_hub_dataset_id, is_hub_id, public_name

REFERENCE_RUNS = ("original", "retrain")
ACCURACY_NAMES = {"retain": "Retain accuracy", "forget": "Forget accuracy", "test": "Test accuracy"}


def build_model_card(
    report: dict[str, Any],
    run: str,
    *,
    model_name: str,
    base_model: str | None = None,
    library_name: str = "transformers",
    stem: str | None = None,
    remote_code: bool = False,
    location: str | None = None,
    license: str | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
    language: str | list[str] | None = None,
    tags: list[str] | None = None,
    dataset_id: str | None = None,
    dataset_config: str | None = None,
):
    """A `huggingface_hub.ModelCard` for one run of ``report`` (design.md "Evaluation and report").

    ``location``: what the usage lines load (the repo id when pushed, else the export folder; default
    ``model_name``). ``remote_code`` (or ``stem="cifar"``): the model's code ships with it, so loading takes
    ``trust_remote_code=True``. ``license`` (with ``license_name`` and ``license_link`` for ``other``), ``language``
    and ``tags`` go into the metadata as given (tags after hf_unlearn's own). The model-index (EvalResults) and
    ``datasets:`` name the data set only by a Hub id: ``dataset_id``, else the report's data set when it is
    ``owner/name`` on the Hub; a local or built-in data set gets neither (the numbers stay in the ``hf_unlearn``
    block and the text)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    entry = report["models"][run]
    dataset = public_name(str(report["dataset"]))  # never a local path
    hub_dataset = dataset_id if is_hub_dataset_id(dataset_id) else dataset if is_hub_dataset_id(dataset) else None
    forget_set = report["forget_set"]

    def result(metric_type: str, value: float, name: str, split: str | None, config: str | None = None):
        return EvalResult(
            task_type="image-classification",
            task_name="Image Classification (machine unlearning)",
            dataset_type=hub_dataset,
            dataset_name=dataset if dataset not in (None, "unknown") else hub_dataset,
            dataset_config=dataset_config,
            dataset_split=split,
            metric_type=metric_type,
            metric_value=float(value),
            metric_name=name,
            metric_config=config,
        )

    eval_results = [
        result("accuracy", entry["accuracy"][split], ACCURACY_NAMES[split], split)
        for split in ("retain", "forget", "test")
    ]
    if entry.get("tow") is not None:
        eval_results.append(result("tow", entry["tow"], "ToW (tug of war vs the retrained model)", None))
    for attack, value in (entry.get("mia") or {}).items():
        if value is not None:
            eval_results.append(result("mia_efficacy", value, f"MIA-efficacy ({attack})", "forget", attack))
    for attack, value in (entry.get("attacks") or {}).items():
        if value is not None:
            eval_results.append(result("roc_auc", value["auc"], f"Membership attack AUC ({attack})", "forget", attack))

    card_tags = ["hf_unlearn", "machine-unlearning", "image-classification", f"unlearning-{entry['method']}"]
    if entry.get("sharpness", "none") != "none":
        card_tags.append("sharpness-aware-minimization")
    if library_name == "timm":
        card_tags += ["timm", "transformers"]
    card_tags += [tag for tag in tags or [] if tag not in card_tags]
    references = {
        name: {"accuracy": report["models"][name]["accuracy"], "tow": report["models"][name].get("tow")}
        for name in REFERENCE_RUNS
        if name in report["models"]
    }
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[hub_dataset] if hub_dataset else None,
        language=language,
        license=license,
        license_name=license_name,
        license_link=license_link,
        library_name=library_name,
        pipeline_tag="image-classification",
        metrics=["accuracy"],
        tags=card_tags,
        eval_results=eval_results if hub_dataset else None,
        hf_unlearn={
            "run": run,
            "method": entry["method"],
            "sharpness": entry.get("sharpness"),
            "hyperparameters": _own_hyperparameters(entry),
            "dataset": dataset,
            "seed": report.get("seed"),
            # kind, size, commitment (and band / name ...): scalars only, so never a list of indices.
            "forget_set": {k: v for k, v in forget_set.items() if v is None or isinstance(v, (str, int, float, bool))},
            "accuracy": entry["accuracy"],
            "tow": entry.get("tow"),
            "mia": entry.get("mia"),
            "attacks": entry.get("attacks"),  # AUC and TPR at low FPR, forget vs test (docs/privacy.md)
            "references": references,
        },
    )
    usage = _usage(
        location or model_name,
        library_name=library_name,
        remote_code=remote_code or stem == "cifar",
        stem=stem,
        pushed=location is None or is_hub_id(location),
    )
    body = _card_body(report, run, model_name=model_name, base_model=base_model, library_name=library_name)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}{usage}")


def folder_location(folder: str | Path) -> str:
    """How the card of an export that is not pushed names its folder: the path as given when it is relative (or
    below the working folder), else ``./<folder name>``, so that no absolute local path is written into a card."""
    folder = Path(folder)
    if not folder.is_absolute():
        return folder.as_posix()
    relative = os.path.relpath(folder)
    return Path(relative).as_posix() if not relative.startswith("..") else f"./{folder.name}"


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _own_hyperparameters(entry: dict[str, Any]) -> dict[str, Any]:
    from .registry import own_settings

    return own_settings(entry["method"], entry.get("hyperparameters") or {}, entry.get("sharpness", "none"))


def _card_body(
    report: dict[str, Any],
    run: str,
    *,
    model_name: str,
    base_model: str | None,
    library_name: str,
) -> str:
    entry = report["models"][run]
    forget = report["forget_set"]
    dataset = public_name(str(report["dataset"]))
    if base_model is None:
        origin = "trained from scratch"
    elif is_hub_id(base_model):
        origin = f"fine-tuned from [{base_model}](https://huggingface.co/{base_model})"
    else:
        origin = f"fine-tuned from a model loaded from a local folder (`{Path(base_model).name}`)"
    sharpness = entry.get("sharpness", "none")
    lines = [
        f"# {model_name}",
        "",
        f"An image classifier {origin} on `{dataset}` and then made to forget "
        f"{forget['size']} of its training samples with hf_unlearn: method `{entry['method']}`"
        + (f" with sharpness-aware updates (`{sharpness}`)." if sharpness != "none" else "."),
        "",
        "## Results",
        "",
        "Accuracy on the retained training samples, on the forgotten ones and on the test split; ToW (tug of war: the "
        "product of 1 - |accuracy difference| against a model retrained without the forget set, 1 = as if never "
        "trained on it); MIA-efficacy (the fraction of forget samples a membership-inference attack calls "
        "non-members)."
        + (
            " No reference model was used, so there is no ToW."
            if (report.get("reference") or {}).get("kind") == "none"
            else ""
        ),
        "",
        "| model | retain acc | forget acc | test acc | ToW | "
        + " | ".join(f"MIA ({k})" for k in entry.get("mia", {}))
        + " |",
        "|---|---|---|---|---|" + "---|" * len(entry.get("mia", {})),
    ]
    for name in (run, *[r for r in REFERENCE_RUNS if r in report["models"] and r != run]):
        m = report["models"][name]
        label = f"**{name}** (this model)" if name == run else f"{name} (reference)"
        mia = [_fmt(m.get("mia", {}).get(k)) for k in entry.get("mia", {})]
        acc = m["accuracy"]
        lines.append(
            f"| {label} | {_fmt(acc['retain'])} | {_fmt(acc['forget'])} | {_fmt(acc['test'])} | {_fmt(m.get('tow'))} | "
            + " | ".join(mia)
            + " |"
        )
    hyper = _own_hyperparameters(entry)
    lines += [
        "",
        "## Unlearning",
        "",
        f"- method: `{entry['method']}`, sharpness: `{sharpness}`",
        f"- data set: `{dataset}`, seed {report.get('seed')}",
        "- hyperparameters:",
        "",
        "```json",
        json.dumps(hyper, indent=2, sort_keys=True, default=str),
        "```",
        "",
        "## Forget set",
        "",
        f"- kind: `{forget['kind']}`, size: {forget['size']} samples",
        *(
            [
                f"- commitment: `{forget['commitment']}`",
                "",
                "The commitment binds this model to one forget set without revealing it: it is the HMAC-SHA256 of "
                "the sorted indices of the forgotten training samples (decimal, joined by `,`) under a random 32-byte "
                "key that only the model's publisher holds. Nobody can test a guessed list against it without that "
                "key; the publisher can prove which list it was with `hf-unlearn verify`. The samples, their indices "
                "and the key are not published with this model.",
            ]
            if forget.get("commitment")
            else ["- identifier: not recorded. The samples are not published with this model."]
        ),
    ]
    return "\n".join(lines) + "\n"


def _usage(location: str, *, library_name: str, remote_code: bool, stem: str | None, pushed: bool) -> str:
    """The card's "Usage" section: how to load this model from ``location`` (its repo id when ``pushed``, else its
    folder), with ``trust_remote_code=True`` when its code ships with it."""
    trust = ", trust_remote_code=True" if remote_code else ""
    text = []
    if stem == "cifar":
        text.append(
            'This ResNet has the CIFAR stem (a 3x3 stride-1 convolution and no max-pool; `"stem": "cifar"` in '
            "config.json), which transformers' own ResNet does not build."
        )
    if remote_code:
        text.append(
            "Its code ships with the weights (`configuration_*.py` and `modeling_*.py`, named by `auto_map` in "
            "config.json; they need only torch and transformers), so loading it takes `trust_remote_code=True`:"
        )
    lines = ["", "## Usage", "", *([" ".join(text), ""] if text else [])]
    lines += [
        "```python",
        "from transformers import AutoModelForImageClassification, pipeline",
        "",
        f'model = AutoModelForImageClassification.from_pretrained("{location}"{trust})',
        f'classifier = pipeline("image-classification", model="{location}"{trust})',
        "```",
    ]
    if library_name == "timm":
        lines += [
            "",
            "```python",
            "import timm",
            "",
            f'model = timm.create_model("{"hf-hub" if pushed else "local-dir"}:{location}", pretrained=True)',
            "```",
        ]
    return "\n".join(lines) + "\n"
