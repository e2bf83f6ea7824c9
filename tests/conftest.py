import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's configuration files, free to break."""
    for folder in ("environments", "nodes", "images", "apps"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


@pytest.fixture
def project(tree):
    """The test environment of such a copy, with its secrets, reporting into a Recorder."""
    from lapinfra.project import Project
    from lapinfra.report import Recorder

    p = Project("test", root=tree, reporter=Recorder())
    p.secrets.ensure()
    return p
