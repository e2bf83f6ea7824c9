"""The git server: gitolite over SSH at ``git@git.<domain>`` (port 22 of the master), the admin key only, the environment's repositories in it.

Every check uses the real git and ssh clients, the way a workstation does:
``git clone git@git.internal:gitolite-admin`` with
``GIT_SSH_COMMAND="ssh -i <key> -o IdentitiesOnly=yes"``. The name is looked up
at the environment's own DNS server (the workstation's resolver need not know
the zone), and handed to ssh as ``HostName``. The git container's own host key
is not pinned by the framework, so it is read from the container
(``/data/ssh/ssh_host_ed25519_key.pub``) over the node's pinned SSH connection
and pinned here for the name ``git.<domain>``; any other host key fails.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import uuid

import dns.message
import dns.query
import dns.rdatatype
import pytest

from lapinfra import services

CONTAINER = "infra_git"
HOST_KEY = "/data/ssh/ssh_host_ed25519_key.pub"


def resolve(name: str, server: str) -> str:
    """The A record of ``name`` at the environment's DNS server."""
    answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), server, timeout=5)
    addresses = [r.address for rrset in answer.answer for r in rrset if r.rdtype == dns.rdatatype.A]
    assert addresses, f"{name} does not resolve at {server}"
    return addresses[0]


def pin(path, domain: str, host_key) -> str:
    """Write a known_hosts file trusting ``host_key`` (type, base64) for git.<domain>; return the path."""
    keytype, key = host_key[:2]
    path.write_text(f"git.{domain} {keytype} {key}\n")
    return path


class Git:
    """Runs git (or ssh) against git@git.<domain> with one identity and the pinned host key."""

    def __init__(self, dns_server: str, known_hosts, identity, domain: str = "internal"):
        self.host = f"git.{domain}"
        self.identity = identity
        self.ssh = [
            "ssh", "-F", "/dev/null", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"HostName={resolve(self.host, dns_server)}", "-o", f"HostKeyAlias={self.host}",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
        ]
        self.env = {
            **os.environ,
            "GIT_SSH_COMMAND": shlex.join(self.ssh),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_GLOBAL": os.devnull,   # no url rewrites etc. from the workstation's ~/.gitconfig
            "GIT_AUTHOR_NAME": "verify suite", "GIT_AUTHOR_EMAIL": "verify@invalid",
            "GIT_COMMITTER_NAME": "verify suite", "GIT_COMMITTER_EMAIL": "verify@invalid",
        }

    def url(self, repo: str) -> str:
        return f"git@{self.host}:{repo}"

    def __call__(self, *args, cwd=None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=60)

    def info(self) -> subprocess.CompletedProcess:
        """gitolite's "info" command: the repositories this key can access."""
        return subprocess.run([*self.ssh, f"git@{self.host}", "info"], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def known_hosts(node, env, tmp_path_factory):
    """known_hosts with the git container's ed25519 host key for git.<domain>."""
    out = node.run(f"docker exec {CONTAINER} cat {HOST_KEY}")
    assert out.rc == 0, f"cannot read {CONTAINER}'s host key: {out.stderr.strip()}"
    host_key = out.stdout.split()[:2]
    assert host_key[0] == "ssh-ed25519"
    return pin(tmp_path_factory.mktemp("git-ssh") / "known_hosts", env.domain, host_key)


@pytest.fixture(scope="module")
def admin(project, master_ip, known_hosts) -> Git:
    return Git(master_ip, known_hosts, project.secrets.path("admin_ed25519"), project.env.domain)


@pytest.fixture(scope="module")
def stranger(project, master_ip, known_hosts, tmp_path_factory) -> Git:
    """A freshly generated key that the git server has never seen."""
    key = tmp_path_factory.mktemp("git-stranger") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "verify-stranger", "-f", str(key)], check=True)
    return Git(master_ip, known_hosts, key, project.env.domain)


def test_admin_key_clones_gitolite_admin(admin, project, tmp_path):
    r = admin("clone", "--quiet", admin.url("gitolite-admin"), str(tmp_path / "gitolite-admin"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "gitolite-admin" / "conf" / "gitolite.conf").is_file()
    in_keydir = (tmp_path / "gitolite-admin" / "keydir" / "admin.pub").read_text().split()[:2]
    assert in_keydir == project.secrets.path("admin_ed25519.pub").read_text().split()[:2]


def test_other_key_is_refused(stranger, tmp_path):
    r = stranger("clone", "--quiet", stranger.url("gitolite-admin"), str(tmp_path / "gitolite-admin"))
    assert r.returncode != 0
    assert "Permission denied (publickey)" in r.stderr, r.stderr   # refused by sshd, not unreachable
    assert not (tmp_path / "gitolite-admin" / "conf").exists()


def test_only_key_logins_are_offered(admin):
    """sshd offers no password or keyboard-interactive login: "Permission denied (publickey)" lists the methods."""
    r = subprocess.run(
        [*admin.ssh, "-o", "PubkeyAuthentication=no",
         "-o", "PreferredAuthentications=password,keyboard-interactive", f"git@{admin.host}", "info"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 255
    assert "Permission denied (publickey)." in r.stderr, r.stderr


def test_every_declared_repository_exists(admin, env):
    failed = {}
    for repo in env.git.repositories:
        r = admin("ls-remote", admin.url(repo))
        if r.returncode != 0:
            failed[repo] = r.stderr.strip()
    assert not failed, f"repositories not served: {failed}"
    info = admin.info()
    assert info.returncode == 0, info.stderr
    writable = {line.split("\t")[-1] for line in info.stdout.splitlines() if line.startswith(" R W")}
    assert set(env.git.repositories) <= writable, info.stdout


def test_pushed_commit_is_visible_in_a_fresh_clone(admin, env, tmp_path):
    repo = "sandbox" if "sandbox" in env.git.repositories else env.git.repositories[0]
    branch = f"{services.SUITE_PLACE}/{uuid.uuid4().hex[:12]}"   # the suite's own branch, deleted below
    work, fresh = tmp_path / "work", tmp_path / "fresh"
    assert admin("init", "--quiet", str(work)).returncode == 0
    (work / "probe.txt").write_text(f"{branch}\n")
    assert admin("add", "probe.txt", cwd=work).returncode == 0
    assert admin("commit", "--quiet", "-m", f"verify suite probe {branch}", cwd=work).returncode == 0
    commit = admin("rev-parse", "HEAD", cwd=work).stdout.strip()

    r = admin("push", "--quiet", admin.url(repo), f"HEAD:refs/heads/{branch}", cwd=work)
    assert r.returncode == 0, r.stderr
    try:
        r = admin("clone", "--quiet", "--branch", branch, "--single-branch", admin.url(repo), str(fresh))
        assert r.returncode == 0, r.stderr
        assert admin("rev-parse", "HEAD", cwd=fresh).stdout.strip() == commit
        assert (fresh / "probe.txt").read_text() == f"{branch}\n"
    finally:
        r = admin("push", "--quiet", admin.url(repo), "--delete", branch, cwd=work)
        assert r.returncode == 0, r.stderr
    assert branch not in admin("ls-remote", "--heads", admin.url(repo)).stdout
