"""Bounds: a node that takes the TCP connection but never answers is an error, not a hang
(every Fabric Connection lapinfra makes comes from Nodes.connect), and so is a short
command on the master that does not finish (MasterSession.run)."""
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from lapinfra import facts, nodes as nodes_mod
from lapinfra.phases import MasterSession
from lapinfra.errors import LapinfraError
from lapinfra.nodes import Nodes


@pytest.fixture
def silent_node():
    """A TCP port that accepts connections and then says nothing (no SSH banner)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_node_that_never_sends_its_ssh_banner_is_an_error_within_the_connect_bound(project, silent_node, monkeypatch):
    monkeypatch.setattr(nodes_mod, "CONNECT_SECONDS", 1)   # Fabric keeps whole seconds
    node = SimpleNamespace(name="master", dynamic=False, admin_port=silent_node, ssh_host=f"[127.0.0.1]:{silent_node}")
    nodes = Nodes(project)
    monkeypatch.setattr(Nodes, "address", lambda self, n: "127.0.0.1")
    nodes.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    public = project.secrets.path("admin_ed25519.pub").read_text().split()[:2]   # any ed25519 key will do: none is shown
    nodes.known_hosts.write_text(f"{node.ssh_host} {' '.join(public)}\n")
    conn = nodes.connect(node)
    assert conn.connect_timeout == 1
    assert conn.connect_kwargs["banner_timeout"] == 1 and conn.connect_kwargs["auth_timeout"] == 1
    started = time.monotonic()
    with pytest.raises(Exception):
        conn.open()
    assert time.monotonic() - started < 5       # paramiko's own banner wait is 15 s
    conn.close()


class HangingConn:
    """The session's SSH connection to a master whose commands never end: Fabric's
    run(timeout=) closes the channel and raises CommandTimedOut once the bound is reached."""

    def __init__(self):
        self.timeouts = []

    def run(self, command, hide=True, warn=False, timeout=None):
        from invoke.exceptions import CommandTimedOut
        from invoke.runners import Result

        self.timeouts.append(timeout)
        if timeout is None:
            raise AssertionError(f"{command!r} would wait forever")
        raise CommandTimedOut(Result(command=command, exited=-1), timeout=timeout)


def test_a_read_on_a_master_that_does_not_finish_is_an_error_naming_the_command():
    s = MasterSession(SimpleNamespace(env=SimpleNamespace(master=SimpleNamespace(name="master"))))
    s.conn = HangingConn()
    with pytest.raises(LapinfraError, match=r"master did not finish `cat /data/lapinfra/release.json` within 120s"):
        s.read_json("/data/lapinfra/release.json")
    with pytest.raises(LapinfraError, match="within 120s"):
        s.read_jsonl("/data/lapinfra/releases.jsonl")
    with pytest.raises(LapinfraError, match="within 120s"):
        facts.read_files(s, ["/data/environment"])
    assert s.conn.timeouts == [120, 120, 120]
