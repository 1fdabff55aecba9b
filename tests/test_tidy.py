"""A command leaves no empty folder it created: a run whose Hub data set cannot be loaded leaves no empty
``runs/<name>/``; folders that existed before, or hold anything, stay."""

from __future__ import annotations

from conftest import run_cli, tiny_recipe

from hf_unlearn.lock import LOCK_NAME, FolderLock
from hf_unlearn.tidy import prune_created, removing_empty_folders


def test_a_failed_hub_load_leaves_no_empty_run_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "tiny"
    assert run_cli(tmp_path, tiny_recipe(**{"data.source": "nobody/no-such-dataset"}), out) == 2
    assert "hf-unlearn: error: data" in capsys.readouterr().err  # failed inside the run, after the lock
    assert not (tmp_path / "runs").exists()  # runs/tiny/ and the runs/ created with it


def test_only_empty_folders_the_command_created_go(tmp_path):
    kept = tmp_path / "kept-empty"
    kept.mkdir()
    with removing_empty_folders(tmp_path):
        (tmp_path / "checkpoints" / "tune-neggrad").mkdir(parents=True)
        (tmp_path / "models" / "neggrad").mkdir(parents=True)
        (tmp_path / "models" / "neggrad" / "config.json").write_text("{}")
        with FolderLock(tmp_path / "locked-then-released"):
            pass
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "locked-then-released").exists()
    assert kept.is_dir() and (tmp_path / "models" / "neggrad" / "config.json").is_file()


def test_a_folder_another_command_holds_stays(tmp_path):
    folder = tmp_path / "busy"
    with FolderLock(folder):  # another command took the folder meanwhile
        (folder / ".hf_unlearn.lock.json").unlink()  # (its record not written yet)
        prune_created(tmp_path, set())
        assert (folder / LOCK_NAME).exists()
