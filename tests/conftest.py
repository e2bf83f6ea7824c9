import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tool(path: str, name: str, environment: dict | None = None, monkeypatch=None):
    """A tool the images run as a command (``images/backup/lapbackup.py``), as a fresh module
    named ``name``. No bytecode is written beside it: a __pycache__ in an image's folder would
    change the image's content hash. With ``environment`` (and ``monkeypatch``), the process
    environment is set first, as lapinfra sets the tool's container's."""
    import importlib.util
    import sys

    for key, value in (environment or {}).items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


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


@pytest.fixture(scope="session")
def generated_secrets(tmp_path_factory) -> Path:
    """secrets/test of a copy, generated once per session (keys, a CA, certificates and bcrypt
    entries take about 0.4 s a set); each ``project`` starts from a copy of them."""
    root = copy_tree(tmp_path_factory.mktemp("secrets-once"))
    return test_project(root).secrets.dir


@pytest.fixture
def project(tree, generated_secrets):
    """The test environment of such a copy, with its secrets (a copy of the session's set,
    completed by SecretStore.ensure like any checkout's), reporting into a Recorder."""
    shutil.copytree(generated_secrets, tree / "secrets" / "test")
    return test_project(tree)
