"""The CD server pins the git server's host key: lapinfra renders git_known_hosts from the
git container's key on the master and hands it to infra_cd as /run/secrets/git.known_hosts
(images/cd/entrypoint.sh then checks the key strictly); before git's first start the deploy
writes the git server's ed25519 host key itself, so the pin holds from the first deploy."""
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lapinfra import phases, services
from lapinfra.nodes import Nodes
from tests.conftest import ROOT
from tests.unit.test_node_files import Conn, Node


def host_key() -> str:
    """A git container's ssh_host_ed25519_key.pub: type, key, comment."""
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return public + " root@infra_git\n"


def test_the_known_hosts_line_names_the_host_the_cd_server_dials_and_drops_the_comment():
    key = host_key()
    kind, blob = key.split()[:2]
    assert phases.git_known_hosts_line(key) == f"infra_git {kind} {blob}\n"
    assert phases.git_known_hosts_line(key, port=2222) == f"[infra_git]:2222 {kind} {blob}\n"
    assert '"ssh://git@infra_git:22/"' in (ROOT / "images/cd/templates/master.cfg.j2").read_text()


@pytest.mark.parametrize("text", ["", "cat: no such file", "ssh-ed25519", "ssh-ed25519 not*base64 x"])
def test_anything_but_a_public_key_gives_no_line(text):
    assert phases.git_known_hosts_line(text) == ""


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="OpenSSH's ssh-keygen is not installed")
def test_openssh_finds_the_key_under_the_cd_servers_host_name(tmp_path):
    key = host_key()
    known = tmp_path / "known_hosts"
    known.write_text(phases.git_known_hosts_line(key))
    found = subprocess.run(["ssh-keygen", "-F", "infra_git", "-f", str(known)], capture_output=True, text=True)
    assert found.returncode == 0 and key.split()[1] in found.stdout
    assert subprocess.run(["ssh-keygen", "-F", "evil", "-f", str(known)], capture_output=True).returncode != 0


class Master(Conn):
    """The master: the stand-in file system, and `cat` of its files."""

    def run(self, command, **kw):
        from types import SimpleNamespace

        if command.startswith("cat "):
            entry = self.node.fs.get(command.split()[1])
            ok = entry is not None and entry[0] == "file"
            return SimpleNamespace(stdout=entry[2].decode() if ok else "", ok=ok, failed=not ok)
        return super().run(command, **kw)


@pytest.fixture
def session(project):
    backup = project.env.node("backup")
    known = Nodes(project).known_hosts
    known.parent.mkdir(parents=True, exist_ok=True)
    known.write_text(f"{backup.ssh_host} {host_key().split()[0]} {host_key().split()[1]}\n")
    s = phases.MasterSession(project)
    s.conn = Master(Node())
    return s


def test_before_gits_first_start_the_deploy_gives_git_its_host_key_and_pins_it(project, session):
    phases.upload_secrets(session, project, services.services(project.env))
    fs = session.conn.node.fs
    kind, mode, private = fs[phases.GIT_HOST_KEY.removesuffix(".pub")]
    assert mode == 0o600
    public = fs[phases.GIT_HOST_KEY][2].decode()
    pinned = fs["/data/secrets/cd/git.known_hosts"][2].decode()
    assert pinned == f"infra_git {public.split()[0]} {public.split()[1]}\n"
    # the private key goes to the master only: never into the secrets folder
    assert not any(private in f.read_bytes() for f in project.secrets.path("x").parent.iterdir() if f.is_file())
    # the public key is the private one's
    loaded = serialization.load_ssh_private_key(private, password=None)
    assert loaded.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                            serialization.PublicFormat.OpenSSH).decode() == " ".join(public.split()[:2])
    # the next deploy finds that key and changes nothing
    assert phases.pin_git_host_key(session, project) is False


def test_once_git_has_its_key_the_cd_server_gets_it_pinned_and_only_infra_cds_spec_moves(project, session):
    from lapinfra.backup import write_backup_known_hosts

    write_backup_known_hosts(project)
    phases.write_git_known_hosts(project, None)     # as release_record leaves it before the session
    before = phases.config_hashes(project, {})
    key = host_key()
    session.conn.node.mkdirs("/data/git/ssh")
    session.conn.node.fs[phases.GIT_HOST_KEY] = ("file", 0o644, key.encode())
    phases.upload_secrets(session, project, services.services(project.env))
    kind, mode, data = session.conn.node.fs["/data/secrets/cd/git.known_hosts"]
    assert data.decode() == f"infra_git {key.split()[0]} {key.split()[1]}\n" and mode == 0o600
    after = phases.config_hashes(project, {})
    assert [name for name in before if before[name] != after[name]] == ["cd"]
    # a git server made anew (node.down, then up) has another key: the next deploy pins that one
    other = host_key()
    session.conn.node.fs[phases.GIT_HOST_KEY] = ("file", 0o644, other.encode())
    phases.upload_secrets(session, project, [services.by_name(project.env, "cd")])
    assert session.conn.node.fs["/data/secrets/cd/git.known_hosts"][2].decode().split()[2] == other.split()[1]
    # and one that has none yet gets a new key, pinned instead of the old one
    del session.conn.node.fs[phases.GIT_HOST_KEY]
    phases.upload_secrets(session, project, [services.by_name(project.env, "cd")])
    made = session.conn.node.fs[phases.GIT_HOST_KEY][2].decode()
    assert made.split()[1] not in (key.split()[1], other.split()[1])
    assert session.conn.node.fs["/data/secrets/cd/git.known_hosts"][2].decode().split()[2] == made.split()[1]
