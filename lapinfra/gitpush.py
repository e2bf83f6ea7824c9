"""The git push of a deploy: the target's infrastructure repository on its git server gets the
deployed commit (branch ``master``, the productive version, and the tag ``deployed-<commit>``),
over SSH as the admin, with the git server's host key as the master holds it pinned.

``read`` gives the facts a deploy decides on (facts.GitFacts: where the branch is, whether the
tag is there, whether moving the branch would drop commits), with one ``git ls-remote``; the
push itself is an action (actions.PushGit) that the executor applies with ``push``, which
asks nothing more. The branch only moves forward: a deploy whose push would drop the target's
commits is refused before anything changes (``check_git``, on ``read``'s facts) unless it is
forced, which is warned and recorded.
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


def refuse_drop(found: GitFacts, force: bool = False, branch: str = BRANCH) -> None:
    """LapinfraError naming the branch and both commits when pushing ``found.head`` would drop commits
    of the target's branch (``found.drops``), unless ``force``."""
    if found.drops and not force:
        raise LapinfraError(
            f"git push to {found.url} refused: its branch {branch} is at {found.branch[:12]}, which this checkout's HEAD "
            f"({found.head[:12]}) does not contain: pushing would drop its commits. Merge or rebase "
            f"onto it (`git fetch {found.url} {branch}`), or give --force to push over it (warned and recorded)")


def check_git(s: MasterSession, project, force: bool = False) -> GitFacts:
    """Refuse a deploy, before anything changes, whose git push would drop the target's commits
    (decided on ``read``'s facts, which it returns)."""
    found = read(s, project)
    refuse_drop(found, force)
    return found


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
                    drops=overwritten(repo, branch), url=url)


def push(s: MasterSession, project, action: PushGit) -> None:
    """Apply ``action``: HEAD to the branch and the tag ``deployed-<commit>``. The branch moves forward
    only, unless ``action.over`` names the commit it was decided to push over (--force, warned): then
    only while the branch is still there (--force-with-lease). No ls-remote of its own: what the
    push would drop was decided on ``read``'s facts, and git refuses a branch that moved since."""
    import git

    with git_remote(s, project) as remote:
        if remote is None:
            raise LapinfraError(f"git push of {action.commit[:12]}: the git server on {project.env.master.name} does not run")
        url, git_env = remote
        repo = git.Repo(project.root)
        if repo.head.commit.hexsha != action.commit:
            raise LapinfraError(f"git push of {action.commit[:12]}: this checkout's HEAD moved to {repo.head.commit.hexsha[:12]} meanwhile")
        commit = action.commit[:12]
        if action.over:
            project.reporter.warn(f"--force: branch {action.branch} of {url} at {action.over[:12]} is pushed over by {commit} "
                                  f"(its commits stay reachable by their id only); recorded")
        lease = [f"--force-with-lease=refs/heads/{action.branch}:{action.over}"] if action.over else []
        try:
            repo.git.push(*lease, url, f"HEAD:refs/heads/{action.branch}", f"+HEAD:refs/tags/deployed-{commit}", env=git_env)
        except git.GitCommandError as exc:
            said = exc.stderr.strip()
            if "rejected" in said or "stale info" in said:
                raise LapinfraError(f"git push to {url} refused: its branch {action.branch} is not where the deploy found it "
                                    f"({(action.over or 'a commit HEAD contains')[:40]}), and pushing would drop its commits: "
                                    f"deploy again (`git fetch {url} {action.branch}` shows it). {said[-300:]}") from None
            raise LapinfraError(f"git push to {url} failed: {said[-400:]}") from None
