"""The git push of a deploy: the target's infrastructure repository on its git server gets the
deployed commit (branch ``master``, the productive version, and the tag ``deployed-<commit>``),
over SSH as the admin, with the git server's host key as the master holds it pinned.

``read`` gives the facts a deploy decides on (facts.GitFacts: where the branch is, whether the
tag is there, whether moving the branch would drop commits); the push itself is an action
(actions.PushGit) that the executor applies with ``push``. The branch only moves forward: a
deploy whose push would drop the target's commits is refused before anything changes
(``check_git``) unless it is forced, which is warned and recorded.
"""
from __future__ import annotations

import contextlib
import shlex
import tempfile
from pathlib import Path

from . import services as svc
from .actions import PushGit
from .errors import LapinfraError
from .facts import GitFacts
from .session import MasterSession

BRANCH = "master"     # the target's productive version in its infrastructure repository


@contextlib.contextmanager
def git_remote(s: MasterSession, project):
    """(url, environment for git) of the target's git server, its host key pinned; None when it is not up."""
    host_key = s.conn.run(f"cat {svc.DATA}/git/ssh/ssh_host_ed25519_key.pub", hide=True, warn=True, timeout=30)
    running = [c for c in s.docker.containers.list(filters={"name": "infra_git"}) if c.name == "infra_git"]
    if host_key.failed or not running:
        yield None
        return
    env = project.env
    with tempfile.TemporaryDirectory(prefix="lapinfra-git-") as tmp:
        known = Path(tmp) / "known_hosts"
        known.write_text(f"{env.master.ip} {' '.join(host_key.stdout.split()[:2])}\n")
        ssh = ["ssh", "-i", str(project.secrets.path("admin_ed25519")), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=4"]
        yield f"git@{env.master.ip}:{env.cd.repository}", {"GIT_SSH_COMMAND": shlex.join(ssh), "GIT_TERMINAL_PROMPT": "0"}


def overwritten(repo, target: str | None) -> bool:
    """Would moving the branch from ``target`` (its commit, None: no such branch) to HEAD lose
    commits? True unless ``target`` is HEAD or one of its ancestors (a fast-forward)."""
    import git

    if not target or target == repo.head.commit.hexsha:
        return False
    try:
        return not repo.is_ancestor(target, repo.head.commit.hexsha)
    except (git.GitCommandError, ValueError):    # not even here: HEAD cannot contain it
        return True


def lost_commit(repo, url: str, git_env: dict, force: bool = False, branch: str = BRANCH) -> str | None:
    """The commit of ``branch`` on ``url`` that pushing HEAD there would drop (None: a fast-forward,
    or no such branch yet); LapinfraError naming both commits when there is one, unless ``force``."""
    import git

    try:
        listed = repo.git.ls_remote(url, f"refs/heads/{branch}", env=git_env)
    except git.GitCommandError as exc:
        raise LapinfraError(f"git ls-remote of {url} failed: {exc.stderr.strip()[-400:]}") from None
    target = listed.split()[0] if listed.strip() else None
    if not overwritten(repo, target):
        return None
    if not force:
        raise LapinfraError(
            f"git push to {url} refused: its branch {branch} is at {target[:12]}, which this checkout's HEAD "
            f"({repo.head.commit.hexsha[:12]}) does not contain: pushing would drop its commits. Merge or rebase "
            f"onto it (`git fetch {url} {branch}`), or give --force to push over it (warned and recorded)")
    return target


def push_head(repo, url: str, git_env: dict, force: bool = False, reporter=None, branch: str = BRANCH) -> str | None:
    """Push HEAD to ``branch`` of ``url`` and tag it ``deployed-<commit>``, as a fast-forward only
    unless ``force``; the target's commit that was pushed over (None: nothing was lost)."""
    import git

    commit = repo.head.commit.hexsha[:12]
    lost = lost_commit(repo, url, git_env, force, branch)
    if lost and reporter is not None:
        reporter.warn(f"--force: branch {branch} of {url} at {lost[:12]} is pushed over by {commit} "
                      f"(its commits stay reachable by their id only); recorded")
    # without --force a plain push: git itself refuses a branch that moved since the check
    refspec = f"{'+' if lost else ''}HEAD:refs/heads/{branch}"
    try:
        repo.git.push(url, refspec, f"+HEAD:refs/tags/deployed-{commit}", env=git_env)
    except git.GitCommandError as exc:
        raise LapinfraError(f"git push to {url} failed: {exc.stderr.strip()[-400:]}") from None
    return lost


def check_git(s: MasterSession, project, force: bool = False) -> None:
    """Refuse a deploy, before anything changes, whose git push would drop the target's commits."""
    import git

    with git_remote(s, project) as remote:
        if remote is not None:
            lost_commit(git.Repo(project.root), *remote, force=force)


def read(s: MasterSession, project) -> GitFacts:
    """The target's repository beside this checkout's HEAD (a git server that does not run: up False)."""
    import git

    repo = git.Repo(project.root)
    head = repo.head.commit.hexsha
    with git_remote(s, project) as remote:
        if remote is None:
            return GitFacts(head)
        url, git_env = remote
        try:
            listed = repo.git.ls_remote(url, f"refs/heads/{BRANCH}", f"refs/tags/deployed-{head[:12]}", env=git_env)
        except git.GitCommandError as exc:
            raise LapinfraError(f"git ls-remote of {url} failed: {exc.stderr.strip()[-400:]}") from None
    refs = {ref: commit for commit, ref in (line.split() for line in listed.splitlines() if line.strip())}
    branch = refs.get(f"refs/heads/{BRANCH}")
    return GitFacts(head, up=True, branch=branch, tagged=f"refs/tags/deployed-{head[:12]}" in refs,
                    drops=overwritten(repo, branch))


def push(s: MasterSession, project, action: PushGit) -> None:
    """Apply ``action``: HEAD to the branch and the tag, forced over ``action.over`` only when it names one."""
    import git

    with git_remote(s, project) as remote:
        if remote is None:
            raise LapinfraError(f"git push of {action.commit[:12]}: the git server on {project.env.master.name} does not run")
        repo = git.Repo(project.root)
        if repo.head.commit.hexsha != action.commit:
            raise LapinfraError(f"git push of {action.commit[:12]}: this checkout's HEAD moved to {repo.head.commit.hexsha[:12]} meanwhile")
        push_head(repo, *remote, force=action.over is not None, reporter=project.reporter, branch=action.branch)
