"""Files written atomically get the mode ``open()`` would give them (0666 less the umask), not mkstemp's 0600;
the forget-set manifest, which names the samples to forget and holds the commitment key, stays owner-only."""

import os
import stat

import pytest

from hf_unlearn.atomic import atomic_write_json, umask_mode
from hf_unlearn.data.manifest import SplitManifest


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_reports_are_readable_by_others(tmp_path, umask_022):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"a": 1})
    assert umask_mode() == 0o644
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with open(tmp_path / "plain.txt", "w") as handle:  # what open() gives, for comparison
        handle.write("x")
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == stat.S_IMODE(path.stat().st_mode)


def test_the_manifest_stays_owner_only(tmp_path, umask_022):
    manifest = SplitManifest.build(kind="random", forget_indices=[1, 3], n_train=5, seed=0)
    path = manifest.to_json(tmp_path / "manifest.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
