import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's configuration files, free to break."""
    for folder in ("environments", "nodes", "images"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path
