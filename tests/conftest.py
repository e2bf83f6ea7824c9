import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def copy_tree(into: Path) -> Path:
    """A copy of the project's configuration files in ``into``, free to break."""
    for folder in ("environments", "nodes", "images", "apps"):
        shutil.copytree(ROOT / folder, into / folder)
    return into


def test_project(root: Path):
    """The test environment of a copy at ``root``, with its secrets, reporting into a Recorder."""
    from lapinfra.project import Project
    from lapinfra.report import Recorder

    p = Project("test", root=root, reporter=Recorder())
    p.secrets.ensure()
    return p


test_project.__test__ = False   # a helper, not a test


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's configuration files, free to break."""
    return copy_tree(tmp_path)


@pytest.fixture
def project(tree):
    """The test environment of such a copy, with its secrets, reporting into a Recorder."""
    return test_project(tree)
