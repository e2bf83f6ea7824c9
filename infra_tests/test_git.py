"""The git server: gitolite over SSH on the master's port 2200, the admin key only, the environment's repositories in it.

Every check uses the real git and ssh clients, the way a workstation does:
``GIT_SSH_COMMAND="ssh -i <key> -o IdentitiesOnly=yes -p 2200"``. The git
container's own host key is not pinned by the framework, so it is read from the
container (``/data/ssh/ssh_host_ed25519_key.pub``) over the node's pinned SSH
connection and pinned here; any other host key fails the connection.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import uuid

import pytest

PORT = 2200                   # the node publishes the container's sshd (22) on <master_ip>:2200
CONTAINER = "infra_git"
HOST_KEY = "/data/ssh/ssh_host_ed25519_key.pub"


class Git:
    """Runs git (or ssh) against the git server with one identity and the pinned host key."""

    def __init__(self, master_ip: str, known_hosts, identity):
        self.master_ip = master_ip
        self.ssh = [
            "ssh", "-F", "/dev/null", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-p", str(PORT),
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
        return f"ssh://git@{self.master_ip}:{PORT}/{repo}"

    def __call__(self, *args, cwd=None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=60)

    def info(self) -> subprocess.CompletedProcess:
        """gitolite's "info" command: the repositories this key can access."""
        return subprocess.run([*self.ssh, f"git@{self.master_ip}", "info"], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def known_hosts(node, master_ip, tmp_path_factory):
    """known_hosts with the git container's ed25519 host key for [master_ip]:2200."""
    out = node.run(f"docker exec {CONTAINER} cat {HOST_KEY}")
    assert out.rc == 0, f"cannot read {CONTAINER}'s host key: {out.stderr.strip()}"
    keytype, key = out.stdout.split()[:2]
    assert keytype == "ssh-ed25519"
    path = tmp_path_factory.mktemp("git-ssh") / "known_hosts"
    path.write_text(f"[{master_ip}]:{PORT} {keytype} {key}\n")
    return path


@pytest.fixture(scope="module")
def admin(project, master_ip, known_hosts) -> Git:
    return Git(master_ip, known_hosts, project.secrets.path("admin_ed25519"))


@pytest.fixture(scope="module")
def stranger(master_ip, known_hosts, tmp_path_factory) -> Git:
    """A freshly generated key that the git server has never seen."""
    key = tmp_path_factory.mktemp("git-stranger") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "verify-stranger", "-f", str(key)], check=True)
    return Git(master_ip, known_hosts, key)


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


def test_only_key_logins_are_offered(master_ip, known_hosts):
    """sshd offers no password or keyboard-interactive login: "Permission denied (publickey)" lists the methods."""
    r = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
         "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
         "-p", str(PORT), f"git@{master_ip}", "info"],
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
    branch = f"verify-{uuid.uuid4().hex[:12]}"
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
