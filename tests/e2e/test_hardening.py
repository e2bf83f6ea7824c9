"""Hardening, on the shared test environment (issue 15):

- the Docker API tunnel: while a session to the master is open, no TCP port this
  workstation listens on leads to the node's Docker API; the session's own API is a unix
  socket in a 0700 folder, gone when the session closes;
- what runs is what was released: an image replaced in the node's registry under the
  release's name is refused by `invoke start`, naming it and both ids, and nothing of it
  starts; the registry's right manifest put back, `invoke start` brings it up again.
"""
import os
import socket
import stat
from pathlib import Path

import pytest

from lapinfra import phases, registry, services as svc
from lapinfra.project import Project
from lapinfra.report import Reporter
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(infra):
    return Project(ENV, root=ROOT, reporter=Reporter(quiet=True))


# ---- the Docker API tunnel ------------------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (the session's ssh processes are its children)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    out, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in out]
        out.update(children)
        todo.extend(children)
    return out


def _listening_tcp_ports(pids: set[int]) -> set[int]:
    """The TCP ports the processes ``pids`` listen on (any address, IPv4 and IPv6)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:     # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _docker_answers(port: int) -> bool:
    """Whether 127.0.0.1:``port`` answers Docker's GET /_ping (an API-Version header)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            conn.settimeout(3)
            head = conn.recv(4096)
    except OSError:
        return False
    return b"api-version:" in head.lower()


def test_while_a_session_is_open_no_tcp_port_leads_to_the_nodes_docker_api(project):
    before = _listening_tcp_ports(_descendants(os.getpid()))
    with phases.MasterSession(project) as s:
        assert s.docker.ping()                                  # the session's own API works
        mine = _listening_tcp_ports(_descendants(os.getpid())) - before
        assert mine == {s.registry_port}                         # the registry's tunnel, nothing else
        assert not [p for p in mine if _docker_answers(p)]
        assert s.api_url.startswith("unix://")
        sock = Path(s.api_url[len("unix://"):])
        folder = sock.parent
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    assert not folder.exists()


# ---- what runs is what was released ---------------------------------------------------------------

SWAPPED = "status"     # a small service nothing else waits on
STAND_IN = "sampleapp"  # another image of the release, put under its name


def _manifest(s, repository: str):
    got = registry._registry(s, "GET", f"{repository}/manifests/latest", headers={"Accept": registry.MANIFEST_V2})
    assert got.status_code == 200 and got.headers.get("Content-Type") == registry.MANIFEST_V2, got.status_code
    return got


def _put_manifest(s, repository: str, content: bytes) -> None:
    put = registry._registry(s, "PUT", f"{repository}/manifests/latest", data=content,
                           headers={"Content-Type": registry.MANIFEST_V2})
    assert put.status_code == 201, put.text


def test_an_image_replaced_in_the_registry_is_refused_by_start_and_nothing_of_it_runs(project):
    with phases.MasterSession(project) as s:
        release = s.read_json(f"{svc.STATE_DIR}/release.json")
        target, source = (release["images"][n] for n in (SWAPPED, STAND_IN))
        original = _manifest(s, target["repository"]).content
        # someone with the push account: the stand-in's blobs mounted, its manifest under the release's name
        assert phases.copy_in_registry(s, source["repository"], target["repository"])
        assert _manifest(s, target["repository"]).json()["config"]["digest"] == source["id"]
    ref = f"docker.{project.env.domain}:{project.env.registry.port}/{target['repository']}:latest"
    container = svc.PREFIX + SWAPPED
    try:
        # a fresh start of that service: its container and the master's copy gone, so it is pulled
        node_sh(f"docker rm -f {container} && docker rmi {ref}")
        run = invoke("start", f"--env={ENV}", check=False)
        out = run.stdout + run.stderr
        assert run.returncode != 0, out[-2000:]
        assert f"{ref} is image {source['id']}, release {release['release']} recorded {target['id']}" in out, out[-2000:]
        assert node_sh(f"docker ps -aq --filter name=^/{container}$").stdout.strip() == ""
    finally:
        with phases.MasterSession(project) as s:
            _put_manifest(s, target["repository"], original)
        node_sh(f"docker rmi {ref}", check=False)     # the stand-in the refused pull left under that name
        invoke("start", f"--env={ENV}")
    running = node_sh(f"docker inspect --format '{{{{.Image}}}} {{{{.State.Status}}}}' {container}").stdout.split()
    assert running == [target["id"], "running"]
