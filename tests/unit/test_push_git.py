"""A deploy's git push (lapinfra/gitpush.py): the target's branch only moves forward; its facts, and
the push as the action a deploy decides.

Real git repositories in tmp_path: a bare one stands for the target's git server, the
workstation's checkout pushes to it by path (the SSH transport is all that differs)."""
import subprocess
from pathlib import Path

import git
import pytest

from lapinfra import decisions, deploy, gitpush
from lapinfra.actions import PushGit
from lapinfra.errors import LapinfraError
from lapinfra.report import Recorder

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}


def commit(repo: git.Repo, name: str) -> str:
    Path(repo.working_dir, name).write_text(name + "\n")
    repo.index.add([name])
    return repo.index.commit(name, author=git.Actor("t", "t@example.org"), committer=git.Actor("t", "t@example.org")).hexsha


@pytest.fixture
def server(tmp_path):
    return git.Repo.init(tmp_path / "server.git", bare=True)


@pytest.fixture
def checkout(tmp_path):
    repo = git.Repo.init(tmp_path / "checkout", initial_branch="main")
    commit(repo, "a")
    return repo


def branch(server) -> str:
    return subprocess.run(["git", "-C", server.git_dir, "rev-parse", "refs/heads/master"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def target(server, checkout, monkeypatch):
    """A project whose target's git server is ``server``, reached by path instead of SSH."""
    import contextlib

    @contextlib.contextmanager
    def remote(s, project):
        yield server.git_dir, GIT_ENV

    monkeypatch.setattr(gitpush, "git_remote", remote)
    return type("P", (), {"root": checkout.working_dir, "reporter": Recorder(), "name": "staging"})()


def deploy_push(project, force: bool = False) -> list[PushGit]:
    """A deploy's git push: the check before any change, then the push its facts decide; the pushes."""
    found = gitpush.check_git(None, project, force)
    actions = decisions.git_actions(found, gitpush.BRANCH, force)
    for action in actions:
        gitpush.push(None, project, action)
    return actions


def test_the_first_push_and_a_fast_forward_go_through_and_tag_the_commit(server, checkout, target):
    assert [a.over for a in deploy_push(target)] == [None]
    assert branch(server) == checkout.head.commit.hexsha
    ahead = commit(checkout, "b")
    assert [a.over for a in deploy_push(target)] == [None]
    assert branch(server) == ahead
    assert server.tags[f"deployed-{ahead[:12]}"].commit.hexsha == ahead
    assert deploy_push(target) == []                               # the same commit again: nothing to push


def test_a_target_with_commits_the_checkout_lacks_is_refused_naming_the_branch_and_both_commits(server, checkout, target,
                                                                                                 tmp_path):
    deploy_push(target)
    other = git.Repo.clone_from(server.git_dir, tmp_path / "other")
    theirs = commit(other, "hotfix")
    other.git.push("origin", "HEAD:refs/heads/master")
    mine = commit(checkout, "feature")                             # diverged
    with pytest.raises(LapinfraError) as refused:
        deploy_push(target)
    text = str(refused.value)
    assert "branch master" in text and theirs[:12] in text and mine[:12] in text and "--force" in text
    assert branch(server) == theirs                                # untouched
    assert f"deployed-{mine[:12]}" not in [t.name for t in server.tags]


def test_an_older_checkout_is_refused_too(server, checkout, target):
    old = checkout.head.commit.hexsha
    new = commit(checkout, "b")
    deploy_push(target)
    checkout.git.checkout(old)
    with pytest.raises(LapinfraError, match=f"at {new[:12]}.*HEAD \\({old[:12]}\\)"):
        deploy_push(target)
    assert branch(server) == new


def test_force_pushes_over_it_warns_and_says_what_was_lost(server, checkout, target, tmp_path):
    deploy_push(target)
    other = git.Repo.clone_from(server.git_dir, tmp_path / "other")
    theirs = commit(other, "hotfix")
    other.git.push("origin", "HEAD:refs/heads/master")
    mine = commit(checkout, "feature")
    assert [a.over for a in deploy_push(target, force=True)] == [theirs]
    assert branch(server) == mine
    assert any("--force" in line and theirs[:12] in line for line in target.reporter.lines)


def test_a_forced_push_does_not_drop_a_commit_the_branch_got_after_the_deploy_read_it(server, checkout, target, tmp_path):
    deploy_push(target)
    other = git.Repo.clone_from(server.git_dir, tmp_path / "other")
    commit(other, "hotfix")
    other.git.push("origin", "HEAD:refs/heads/master")
    commit(checkout, "feature")
    forced, = decisions.git_actions(gitpush.check_git(None, target, force=True), gitpush.BRANCH, force=True)
    later = commit(other, "another")                               # pushed while the deploy ran
    other.git.push("origin", "HEAD:refs/heads/master")
    with pytest.raises(LapinfraError, match="refused: its branch master is not where the deploy found it"):
        gitpush.push(None, target, forced)
    assert branch(server) == later


def test_a_deploys_push_asks_the_target_once_for_its_check_and_pushes_without_asking_again(server, checkout, target,
                                                                                            monkeypatch):
    asked = []
    call = git.cmd.Git._call_process
    monkeypatch.setattr(git.cmd.Git, "_call_process",
                        lambda self, method, *a, **kw: (asked.append(method) if method == "ls_remote" else None)
                        or call(self, method, *a, **kw))
    commit(checkout, "b")
    assert len(deploy_push(target)) == 1
    assert asked == ["ls_remote"]


def test_the_deploys_git_facts_decide_its_push_and_a_forced_one_is_recorded_in_the_audit_entry(server, checkout, tmp_path,
                                                                                                monkeypatch):
    import contextlib

    url = server.git_dir
    project = type("P", (), {"root": checkout.working_dir, "reporter": Recorder(), "name": "staging"})()

    @contextlib.contextmanager
    def remote(s, project):     # the target's git server, reached by path instead of SSH
        yield url, GIT_ENV

    monkeypatch.setattr(gitpush, "git_remote", remote)
    head = checkout.head.commit.hexsha
    found = gitpush.read(None, project)
    assert (found.up, found.branch, found.tagged, found.drops) == (True, None, False, False)
    action, = decisions.git_actions(found, gitpush.BRANCH)
    gitpush.push(None, project, action)
    assert decisions.git_actions(gitpush.read(None, project), gitpush.BRANCH) == []     # holds it: nothing to push

    other = git.Repo.clone_from(url, tmp_path / "other")
    theirs = commit(other, "hotfix")
    other.git.push("origin", "HEAD:refs/heads/master")
    commit(checkout, "feature")
    found = gitpush.read(None, project)
    assert (found.branch, found.drops) == (theirs, True) and found.head != head
    with pytest.raises(LapinfraError, match="refused"):
        gitpush.check_git(None, project)              # the deploy's check, before anything changes
    unforced, = decisions.git_actions(found, gitpush.BRANCH)
    with pytest.raises(LapinfraError, match="refused"):
        gitpush.push(None, project, unforced)
    forced, = decisions.git_actions(found, gitpush.BRANCH, force=True)
    assert forced.over == theirs
    gitpush.push(None, project, forced)
    assert branch(server) == checkout.head.commit.hexsha
    assert deploy.git_entry([forced], found) == {"git": forced.commit[:12], "git_forced_over": theirs}
