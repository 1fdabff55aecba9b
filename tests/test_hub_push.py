"""Cards and pushes by the Hub's conventions: a validated license on the card, the Trainer's card fields kept, data
sets named in the model-index only by Hub ids, pushes to a branch or as a pull request, stale files removed on a
re-push, repository ids checked with huggingface_hub's validator. Nothing reaches the network: `HfApi` calls are
replaced at the boundary (for the re-push, only ``list_repo_files``, the YAML check and ``create_commit``, so that
huggingface_hub's own ``upload_folder`` decides what the commit deletes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_args, make_dataset, tiny_resnet_config

from hf_unlearn.hub import REPLACED_ON_PUSH, HubError, build_model_card, export_run, push_run
from hf_unlearn.hub_ids import repo_id_problem
from hf_unlearn.models import build_model_from_config

CLASSES = ["0", "1", "2"]
ENTRY = {
    "method": "neggrad",
    "sharpness": "sam",
    "hyperparameters": {"alpha": 0.9, "rho": 0.1},
    "accuracy": {"retain": 1.0, "forget": 0.5, "test": 0.9},
    "tow": 0.8,
    "mia": {"confidence": 0.5},
}


def _report(dataset: str = "digits") -> dict:
    return {
        "name": "hub",
        "dataset": dataset,
        "seed": 0,
        "base_model": None,
        "forget_set": {"kind": "random", "size": 3, "commitment": "cd" * 32},
        "preprocessing": {"kind": "manual", "image_size": 8, "num_channels": 1, "mean": [0.5], "std": [0.5]},
        "models": {"retrain": {**ENTRY, "method": "retrain", "tow": None}, "neggrad_sam": ENTRY},
    }


def _run_dir(root: Path, *, stem: str | None = None, dataset: str = "digits") -> Path:
    model = build_model_from_config({**tiny_resnet_config(), "layer_type": "bottleneck"}, CLASSES, seed=0, stem=stem)
    model.save_pretrained(root / "models" / "neggrad_sam")
    (root / "report.json").write_text(json.dumps(_report(dataset)))
    return root


def _card(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


# ------------------------------------------------------------------------------------------------- license
def test_recipe_license_is_a_hub_license_id_and_reaches_the_card(tmp_path) -> None:
    from hf_unlearn.recipe import RecipeError, load_recipe

    assert load_recipe("digits")["hub"]["license"] is None
    assert load_recipe("digits", ["hub.license=apache-2.0"])["hub"]["license"] == "apache-2.0"
    with pytest.raises(
        RecipeError, match=r"hub\.license: 'apache2' is not a Hub license id.*Did you mean 'apache-2.0'"
    ):
        load_recipe("digits", ["hub.license=apache2"])
    with pytest.raises(HubError, match="not a Hub license id"):
        export_run(_run_dir(tmp_path / "run"), tmp_path / "bad", license="Apache License")
    folder = export_run(tmp_path / "run", tmp_path / "export", license="cc-by-4.0")
    assert _card(folder).data.license == "cc-by-4.0"


def _front_matter(folder: Path) -> dict:
    """The card's YAML metadata as the Hub reads it (the block between the first two ``---`` lines)."""
    import yaml

    return yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])


def test_license_other_puts_its_name_and_link_in_the_card_metadata(tmp_path, monkeypatch) -> None:
    from hf_unlearn.cli import main

    run_dir = str(_run_dir(tmp_path / "run"))
    other = ["--license", "other", "--license-name", "x-1.0"]
    link = ["--license-link", "https://example.org/l"]
    assert main(["push", run_dir, "--export-dir", str(tmp_path / "e"), *other, *link]) == 0
    meta = _front_matter(tmp_path / "e")
    assert (meta["license"], meta["license_name"], meta["license_link"]) == ("other", "x-1.0", "https://example.org/l")
    card = _card(tmp_path / "e")
    assert (card.data.license_name, card.data.license_link) == ("x-1.0", "https://example.org/l")
    # Without a link: the Hub's LICENSE file, which the export does not invent (its text is the user's).
    assert main(["push", run_dir, "--export-dir", str(tmp_path / "d"), *other]) == 0
    assert _front_matter(tmp_path / "d")["license_link"] == "LICENSE" and not (tmp_path / "d" / "LICENSE").exists()
    # Another license carries neither field.
    meta = _front_matter(export_run(run_dir, tmp_path / "mit", license="mit"))
    assert meta["license"] == "mit" and "license_name" not in meta and "license_link" not in meta
    # And through a push, to the commit's card.
    hub = FakeHub([])
    hub.install(monkeypatch)
    assert main(["push", run_dir, "--repo-id", "me/model", *other, "--license-link", "docs/LICENSE"]) == 0
    card = hub.call("create_commit")["card"]
    assert "\nlicense_name: x-1.0\n" in card and "\nlicense_link: docs/LICENSE\n" in card


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--license", "other"], "--license: other needs --license-name: the Hub expects license_name"),
        (["--license", "mit", "--license-name", "x-1.0"], "--license-name only goes with --license other"),
        (["--license-link", "LICENSE"], "add --license other or remove --license-link"),
        (["--license", "other", "--license-name", "My License 1.0"], "Did you mean 'my-license-1.0'"),
        (["--license", "other", "--license-name", "x_1"], "--license-name: 'x_1' is not a license name in the Hub's"),
        (["--license", "other", "--license-name", "mit"], "give --license mit instead of other"),
        (["--license", "other", "--license-name", "x", "--license-link", "../LICENSE"], "no '..', not absolute"),
        (["--license", "other", "--license-name", "x", "--license-link", "/etc/LICENSE"], "no '..', not absolute"),
        (["--license", "other", "--license-name", "x", "--license-link", "file:///l"], "neither an http(s) URL"),
        (["--license", "other", "--license-name", "x", "--license-link", "https://"], "not a valid http(s) URL"),
    ],
)
def test_cli_refuses_license_settings_the_hub_cannot_show(tmp_path, monkeypatch, capsys, flags, message) -> None:
    from hf_unlearn.cli import main

    hub = FakeHub([])
    hub.install(monkeypatch)
    run_dir = str(_run_dir(tmp_path / "run"))
    kept = tmp_path / "kept"
    assert main(["push", run_dir, "--repo-id", "me/model", "--export-dir", str(kept), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert hub.calls == [] and not kept.exists()  # refused before anything is exported or uploaded
    assert main(["push", run_dir, "--export-dir", str(kept), *flags]) == 2  # an export alone is refused too
    assert message in capsys.readouterr().err and not kept.exists()


def test_recipe_hub_section_takes_license_name_and_link_for_other() -> None:
    from hf_unlearn.recipe import RecipeError, load_recipe

    hub = load_recipe(
        "digits", ["hub.license=other", "hub.license_name=x-1.0", "hub.license_link=https://example.org/l"]
    )["hub"]
    assert (hub["license"], hub["license_name"], hub["license_link"]) == ("other", "x-1.0", "https://example.org/l")
    assert load_recipe("digits", ["hub.license=other", "hub.license_name=x-1.0"])["hub"]["license_link"] is None
    with pytest.raises(
        RecipeError, match=r"hub\.license: other needs hub\.license_name: .*give hub\.license_name: NAME"
    ):
        load_recipe("digits", ["hub.license=other"])
    with pytest.raises(RecipeError, match=r"hub\.license_link only goes with hub\.license: other"):
        load_recipe("digits", ["hub.license=apache-2.0", "hub.license_link=LICENSE"])
    with pytest.raises(RecipeError, match=r"hub\.license_name: 'X 1' is not a license name"):
        load_recipe("digits", ["hub.license=other", "hub.license_name=X 1"])
    with pytest.raises(RecipeError, match=r"hub\.license_link: '\.\./l' is neither"):
        load_recipe("digits", ["hub.license=other", "hub.license_name=x", "hub.license_link=../l"])
    with pytest.raises(RecipeError, match=r"hub\.license_lnk: unknown recipe key"):
        load_recipe("digits", ["hub.license_lnk=LICENSE"])


# ------------------------------------------------------------------------------------------- data set ids
@pytest.mark.parametrize(
    "dataset, hub_id",
    [("uoft-cs/cifar100", "uoft-cs/cifar100"), ("digits", None), ("local:images", None), ("/data/my images", None)],
)
def test_card_names_a_data_set_in_its_metadata_only_by_a_hub_id(tmp_path, dataset: str, hub_id: str | None) -> None:
    card = build_model_card(_report(dataset), "neggrad_sam", model_name="me/x")
    card.save(tmp_path / "README.md")
    loaded = _card(tmp_path)
    assert loaded.data.datasets == ([hub_id] if hub_id else None)
    if hub_id is None:  # no model-index that would claim a Hub data set; the numbers stay in the hf_unlearn block
        assert not loaded.data.eval_results and "model-index" not in loaded.content
        assert loaded.data.to_dict()["hf_unlearn"]["accuracy"] == ENTRY["accuracy"]
    else:
        assert {r.dataset_type for r in loaded.data.eval_results} == {hub_id}
    assert "/data/my images" not in loaded.content


# ----------------------------------------------------------------------------------------- Trainer path
def _trainer(tmp_path: Path, **args):
    from hf_unlearn.trainers import get_trainer_class

    model = build_model_from_config(tiny_resnet_config(), CLASSES, seed=0)
    retain, forget = make_dataset(12, seed=1, shape=(1, 8, 8)), make_dataset(6, seed=2, shape=(1, 8, 8))
    arguments = make_args(tmp_path / "out", method="neggrad", alpha=0.9, **args)
    return get_trainer_class("neggrad")(model=model, args=arguments, retain_dataset=retain, forget_dataset=forget)


def test_trainer_card_keeps_the_license_tags_language_and_data_set_it_is_given(tmp_path) -> None:
    trainer = _trainer(tmp_path)
    test = make_dataset(9, seed=3, shape=(1, 8, 8))
    trainer.create_model_card(
        language="en",
        license="mit",
        tags=["my-tag", "hf_unlearn"],
        dataset_tags="me/digits-8x8",
        dataset="Digits 8x8",
        dataset_args="default",
        test_dataset=test,
    )
    card = _card(tmp_path / "out")
    assert card.data.license == "mit" and card.data.language == "en"
    assert card.data.tags.count("hf_unlearn") == 1 and card.data.tags[-1] == "my-tag"
    assert card.data.datasets == ["me/digits-8x8"]
    results = card.data.eval_results
    assert results and {(r.dataset_type, r.dataset_name, r.dataset_config) for r in results} == {
        ("me/digits-8x8", "Digits 8x8", "default")
    }
    # Not pushed: the card loads the output folder, by its name (no absolute local path in a card).
    assert 'from_pretrained("./out")' in card.content and str(tmp_path) not in card.content
    with pytest.raises(ValueError, match="not a Hub license id"):
        trainer.create_model_card(license="MIT License", test_dataset=test)


def test_trainer_push_to_hub_forwards_the_card_fields(tmp_path, monkeypatch) -> None:
    import transformers.trainer

    uploads: list[dict] = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, *, folder_path, **kwargs):
            uploads.append({"card": (Path(folder_path) / "README.md").read_text(), **kwargs})
            return "https://huggingface.co/me/pushed/commit/0"

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    trainer = _trainer(tmp_path, hub_model_id="me/pushed")
    trainer.push_to_hub(
        license="apache-2.0", tags="mine", dataset="me/data", test_dataset=make_dataset(9, 3, (1, 8, 8))
    )
    from huggingface_hub import ModelCard

    card = ModelCard(uploads[0]["card"])
    assert card.data.license == "apache-2.0" and "mine" in card.data.tags and card.data.datasets == ["me/data"]
    assert 'from_pretrained("me/pushed")' in card.content


# ------------------------------------------------------------------------------------------------- pushes
class FakeHub:
    """The Hub at the network boundary: ``create_repo`` / ``create_branch`` are recorded; ``upload_folder`` is
    huggingface_hub's own, over a repository whose files are ``files`` (``list_repo_files``), and ``create_commit``
    applies and records the operations it was given."""

    def __init__(self, files: list[str]) -> None:
        self.files = set(files)
        self.calls: list[tuple[str, dict]] = []

    def install(self, monkeypatch) -> None:
        import huggingface_hub
        from huggingface_hub import CommitOperationAdd, hf_api

        fake = self

        def create_commit(self, repo_id, operations, **kwargs):
            added = {op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)}
            deleted = {op.path_in_repo for op in operations if not isinstance(op, CommitOperationAdd)}
            fake.files = (fake.files - deleted) | added
            card = [Path(op.path_or_fileobj).read_text() for op in operations if op.path_in_repo == "README.md"]
            record = {"repo_id": repo_id, "added": added, "deleted": deleted, "card": card[0] if card else None}
            fake.calls.append(("create_commit", {**record, **kwargs}))
            url = f"https://huggingface.co/{repo_id}/commit/1"
            return type("Commit", (), {"commit_url": url, "pr_url": None})()

        def record(name):
            return lambda self, *args, **kwargs: fake.calls.append((name, kwargs))

        def validate_yaml(self, content, **kwargs):  # the Hub's /api/validate-yaml: here, a local parse
            huggingface_hub.ModelCard(content)

        monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)  # the single-commit path: create_commit
        monkeypatch.setattr(huggingface_hub.HfApi, "_validate_yaml", validate_yaml)
        monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, **kwargs: sorted(fake.files))
        monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", record("create_repo"))
        monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", record("create_branch"))

    def call(self, name: str) -> dict:
        return [kwargs for called, kwargs in self.calls if called == name][-1]


def test_a_repush_deletes_what_the_new_export_lacks_in_the_same_commit(tmp_path, monkeypatch) -> None:
    earlier = [".gitattributes", "LICENSE", "README.md", "config.json", "configuration_cifar_resnet.py"]
    earlier += ["modeling_cifar_resnet.py", "model.safetensors", "pytorch_model.bin", "preprocessor_config.json"]
    hub = FakeHub(earlier)
    hub.install(monkeypatch)
    push_run(_run_dir(tmp_path / "run"), "me/model", token="hf_fake")  # a plain ResNet replaces a CIFAR-stem one
    commit = hub.call("create_commit")
    assert commit["deleted"] == {"configuration_cifar_resnet.py", "modeling_cifar_resnet.py", "pytorch_model.bin"}
    assert commit["added"] == {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"}
    assert hub.files == {".gitattributes", "LICENSE", *commit["added"]}  # the user's own files stay
    # And back: the CIFAR-stem model's code arrives with it.
    push_run(_run_dir(tmp_path / "cifar", stem="cifar"), "me/model", token="hf_fake")
    assert {"configuration_cifar_resnet.py", "modeling_cifar_resnet.py"} <= hub.files
    assert set(REPLACED_ON_PUSH) >= {"config.json", "README.md", "modeling_*.py"}


def test_cli_push_to_a_branch_or_as_a_pull_request(tmp_path, monkeypatch, capsys) -> None:
    from hf_unlearn.cli import main

    hub = FakeHub([".gitattributes"])
    hub.install(monkeypatch)
    run_dir = str(_run_dir(tmp_path / "run"))
    assert main(["push", run_dir, "--repo-id", "me/model", "--revision", "unlearned-v2", "--license", "mit"]) == 0
    branch = {"repo_id": "me/model", "branch": "unlearned-v2", "repo_type": "model", "exist_ok": True}
    assert hub.call("create_branch") == branch
    commit = hub.call("create_commit")
    assert commit["revision"] == "unlearned-v2" and "\nlicense: mit\n" in commit["card"]
    assert main(["push", run_dir, "--repo-id", "me/model", "--create-pr"]) == 0
    commit = hub.call("create_commit")
    assert commit["create_pr"] is True and commit["revision"] is None
    assert len([c for c, _ in hub.calls if c == "create_branch"]) == 1  # a pull request needs no branch
    assert main(["push", run_dir, "--repo-id", "me/model", "--create-pr", "--revision", "dev"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize(
    "repo_id, fragment",
    [
        ("me/ok-model_1.0", None),
        ("no-owner", "has no owner"),
        ("me/two--dashes", "not a Hub repo id"),
        ("me/bad name", "not a Hub repo id"),
        ("a/b/c", "not a Hub repo id"),
        ("me/" + "x" * 100, "not a Hub repo id"),
        ("", "none given"),
    ],
)
def test_repo_ids_are_checked_by_huggingface_hubs_validator(repo_id: str, fragment: str | None) -> None:
    problem = repo_id_problem(repo_id)
    assert problem is None if fragment is None else fragment in problem


def test_the_hand_written_repo_id_pattern_is_gone() -> None:
    package = Path(__file__).resolve().parents[1] / "hf_unlearn"
    assert not [p for p in package.rglob("*.py") if "[A-Za-z0-9][\\w.-]*/" in p.read_text()]


def test_a_pushed_card_loads_the_repo_id(tmp_path, monkeypatch) -> None:
    hub = FakeHub([])
    hub.install(monkeypatch)
    kept = tmp_path / "kept"
    push_run(_run_dir(tmp_path / "run", stem="cifar"), "me/cifar", token="hf_fake", export_dir=kept, license="mit")
    card = _card(kept)
    assert card.data.license == "mit" and 'from_pretrained("me/cifar", trust_remote_code=True)' in card.content
    assert hub.call("create_commit")["card"] == (kept / "README.md").read_text()
