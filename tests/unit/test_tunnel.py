"""The SSH tunnels (lapinfra/tunnel.py) with a stand-in ``ssh`` on PATH: the node's Docker API
is forwarded to a unix socket in a fresh 0700 folder, never to a TCP port, and the folder goes
when the tunnel closes; the registry's tunnel stays a TCP port of the workstation's loopback."""
import json
import os
import shutil
import stat
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from lapinfra import tunnel
from lapinfra.errors import NodeError
from lapinfra.nodes import DOCKER_API_PORT

# Listens where -L says (a socket path or 127.0.0.1:port), as OpenSSH would, and writes its argv.
FAKE_SSH = textwrap.dedent("""\
    #!{python}
    import json, os, signal, socket, sys, time
    argv = sys.argv[1:]
    open(os.environ["FAKE_SSH_LOG"], "a").write(json.dumps(argv) + "\\n")
    if os.environ.get("FAKE_SSH_FAIL"):
        sys.stderr.write("channel 0: open failed: connect failed: Connection refused\\n")
        sys.exit(255)
    local = argv[argv.index("-L") + 1].rsplit(":", 2)[0]
    if local.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        os.umask(0o177)
        s.bind(local)
    else:
        host, port = local.split(":")
        s = socket.socket()
        s.bind((host, int(port)))
    s.listen(8)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        s.accept()[0].close()
""")


@pytest.fixture
def tmpdir_short(monkeypatch):
    """TMPDIR, short enough for a socket path (pytest's tmp_path often is not)."""
    short = Path(tempfile.mkdtemp(prefix="tt-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(short))
    monkeypatch.setattr(tunnel.tempfile, "tempdir", None)    # read TMPDIR again
    yield short
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def fake_ssh(tmp_path, tmpdir_short, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH.format(python=sys.executable))
    ssh.chmod(0o755)
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


def test_the_docker_api_is_forwarded_to_a_socket_in_a_0700_folder_not_to_a_port(fake_ssh, tmp_path, tmpdir_short):
    with tunnel.Tunnel(tmp_path / "ssh_config", "master", DOCKER_API_PORT, unix=True) as t:
        folder, path = t.folder, t.path
        assert t.port is None and t.url == f"unix://{path}"
        assert path.parent == folder and folder.parent == tmpdir_short
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
        assert stat.S_ISSOCK(path.stat().st_mode)
        (argv,) = fake_ssh()
        assert argv[argv.index("-L") + 1] == f"{path}:127.0.0.1:{DOCKER_API_PORT}"
        options = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
        assert {"StreamLocalBindUnlink=yes", "StreamLocalBindMask=0177", "ExitOnForwardFailure=yes",
                "BatchMode=yes"} <= set(options)
        assert argv[:3] == ["-F", str(tmp_path / "ssh_config"), "-N"] and argv[-1] == "master"
        proc = t.proc
    assert not folder.exists()                  # socket and folder gone with the tunnel
    assert proc.poll() is not None


def test_each_docker_tunnel_gets_a_folder_of_its_own(fake_ssh, tmp_path):
    with tunnel.Tunnel(tmp_path / "c", "master", DOCKER_API_PORT, unix=True) as one, \
            tunnel.Tunnel(tmp_path / "c", "master", DOCKER_API_PORT, unix=True) as two:
        assert one.folder != two.folder


def test_a_failed_docker_tunnel_says_why_and_leaves_no_folder(fake_ssh, tmp_path, tmpdir_short, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_FAIL", "1")
    with pytest.raises(NodeError, match=r"ssh tunnel to master 127.0.0.1:2375 failed: channel 0: open failed"):
        tunnel.Tunnel(tmp_path / "c", "master", DOCKER_API_PORT, unix=True)
    assert list(tmpdir_short.iterdir()) == []


def test_a_long_tmpdir_falls_back_to_tmp_for_the_socket(monkeypatch, tmp_path):
    long = tmp_path / ("x" * 90)
    long.mkdir()
    monkeypatch.setattr(tunnel.tempfile, "gettempdir", lambda: str(long))
    folder = tunnel.socket_folder()
    try:
        assert folder.parent == tunnel.Path("/tmp")
        assert len(str(folder / tunnel.SOCKET_NAME)) <= tunnel.MAX_SOCKET_PATH
    finally:
        folder.rmdir()


def test_the_registry_tunnel_stays_a_port_of_the_loopback(fake_ssh, tmp_path):
    with tunnel.Tunnel(tmp_path / "c", "master", 5000) as t:
        assert t.folder is None and t.url == f"tcp://127.0.0.1:{t.port}"
        (argv,) = fake_ssh()
        assert argv[argv.index("-L") + 1] == f"127.0.0.1:{t.port}:127.0.0.1:5000"


def test_a_master_session_opens_the_api_on_a_socket_and_the_registry_on_the_masters_address(project, monkeypatch):
    """MasterSession's tunnels: the Docker API to a unix socket (the SDK gets unix://), the
    registry to the master's address as the node sees it (it is not published on its loopback)."""
    import contextlib
    from types import SimpleNamespace

    import docker

    from lapinfra import phases, session

    opened = []

    class Nodes:
        ssh_config = Path("/x/ssh_config")

        def __init__(self, p):
            pass

        def connect(self):
            return contextlib.nullcontext(SimpleNamespace(open=lambda: None, transport=SimpleNamespace(set_keepalive=lambda n: None)))

        def write_ssh_config(self):
            pass

    class Tunnel:
        def __init__(self, ssh_config, host, remote_port, **kw):
            opened.append((host, remote_port, kw))
            self.port, self.url = 40000 + len(opened), "unix:///s/docker.sock" if kw.get("unix") else "tcp://127.0.0.1:1"

        def wait_open(self):
            opened.append("waited")
            return self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(session, "Nodes", Nodes)        # MasterSession lives in lapinfra/session.py
    monkeypatch.setattr(session, "Tunnel", Tunnel)
    monkeypatch.setattr(docker, "DockerClient", lambda base_url, timeout: SimpleNamespace(base_url=base_url, close=lambda: None))
    env = project.env
    with phases.MasterSession(project) as s:
        assert s.docker.base_url == s.api_url == "unix:///s/docker.sock"
        assert s.registry_port == 40002
    # both ssh tunnels started before either is waited for: they connect at the same time
    assert opened == [("master", DOCKER_API_PORT, {"unix": True, "wait": False}),
                      ("master", env.registry.port, {"remote_host": str(env.master.ip), "wait": False}), "waited", "waited"]
