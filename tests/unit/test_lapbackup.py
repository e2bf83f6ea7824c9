"""The backup tool's unpause step, against a stand-in Docker API: a container stopped or
recreated while a snapshot held it paused is not "left paused" (it failed scheduled
snapshots whenever a deploy or a `docker stop` met one)."""
import importlib.machinery
import importlib.util

import pytest

from tests.conftest import ROOT


def load_lapbackup(tmp_path, monkeypatch, data=None):
    """The script as a module; with ``data`` its /srv/data (and everything below) is that folder."""
    loader = importlib.machinery.SourceFileLoader("lapbackup", str(ROOT / "images/backup/lapbackup"))
    spec = importlib.util.spec_from_loader("lapbackup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setattr(module, "PAUSED_FILE", str(tmp_path / "paused.json"))
    monkeypatch.setattr(module, "log", lambda message: None)
    if data is not None:
        data = str(data)
        for name, value in {"DATA": data, "STATE": f"{data}/backup", "STATUS": f"{data}/backup/status.json",
                            "PAUSED_FILE": f"{data}/backup/paused.json", "LOCK_FILE": f"{data}/backup/lock",
                            "SEEN_PAUSED": f"{data}/backup/paused-seen.json", "SIZES": f"{data}/backup/sizes.json",
                            "TMP": f"{data}/.restore-tmp", "JOURNAL": f"{data}/.restore-tmp/journal.json"}.items():
            monkeypatch.setattr(module, name, value)
    return module


@pytest.fixture
def lapbackup(tmp_path, monkeypatch):
    return load_lapbackup(tmp_path, monkeypatch)


def _engine(lapbackup, monkeypatch, unpause, paused_now):
    calls = []

    def docker(method, path):
        calls.append((method, path))
        if path.endswith("/unpause"):
            return unpause
        return (200, {"State": {"Paused": paused_now}}) if paused_now is not None else (404, b"")

    monkeypatch.setattr(lapbackup, "docker", docker)
    return calls


@pytest.mark.parametrize("unpause,paused_now", [
    ((500, {"message": "Container abc is not paused"}), False),   # Docker 20.10 after a `docker stop`
    ((409, {"message": "Container abc is not paused"}), False),
    ((500, {"message": "No such container: abc"}), None),         # removed (recreated by a deploy)
    ((204, b""), True),                                             # unpaused as asked
])
def test_a_container_that_is_no_longer_paused_is_done(lapbackup, monkeypatch, tmp_path, unpause, paused_now):
    _engine(lapbackup, monkeypatch, unpause, paused_now)
    lapbackup.unpause_all([{"id": "abc", "name": "infra_artifact"}])
    assert not (tmp_path / "paused.json").exists()


def test_a_container_that_stays_paused_is_an_error_and_remembered(lapbackup, monkeypatch, tmp_path):
    _engine(lapbackup, monkeypatch, (500, {"message": "cannot unpause"}), True)
    with pytest.raises(lapbackup.Fail, match="containers left paused: infra_artifact"):
        lapbackup.unpause_all([{"id": "abc", "name": "infra_artifact"}])
    assert "infra_artifact" in (tmp_path / "paused.json").read_text()   # retried by the next run
