"""One --env for the whole command line, and pre-tasks run once."""
import subprocess
import sys

from invoke import Collection, Config, task
from invoke.parser import Argument, ParserContext

from lapinfra.invoke_ext import EnvExecutor
from tests.conftest import ROOT

ran = []


@task
def build(c, env=None, force=False):
    ran.append(("build", env))


@task(pre=[build])
def check(c, env=None):
    ran.append(("check", env))


@task(pre=[build])
def deploy(c, env=None):
    ran.append(("deploy", env))


@task
def hello(c, name="x"):
    ran.append(("hello", name))


def _ctx(name, given=None, **kw):
    given = {**(given or {}), **kw}
    args = [Argument(names=(k,), kind=str) for k in ("env",)] if name != "hello" else [Argument(names=("name",), kind=str)]
    ctx = ParserContext(name=name, args=args)
    for k, v in given.items():
        ctx.args[k].value = v
    return ctx


def _run(*contexts):
    ran.clear()
    coll = Collection(build, check, deploy, hello)
    EnvExecutor(coll, Config()).execute(*contexts)
    return list(ran)


def test_env_given_last_applies_to_every_task_and_pre_task():
    assert _run(_ctx("build"), _ctx("check"), _ctx("deploy", env="prod")) == [
        ("build", "prod"), ("check", "prod"), ("deploy", "prod")]


def test_env_given_first_applies_to_later_tasks():
    assert _run(_ctx("check", env="staging"), _ctx("deploy")) == [("build", "staging"), ("check", "staging"), ("deploy", "staging")]


def test_tasks_without_env_are_untouched():
    assert _run(_ctx("hello", {"name": "y"}), _ctx("deploy", env="prod")) == [("hello", "y"), ("build", "prod"), ("deploy", "prod")]


def test_no_env_keeps_the_default():
    assert _run(_ctx("deploy")) == [("build", None), ("deploy", None)]


def test_conflicting_envs_are_refused():
    import pytest
    from invoke.exceptions import Exit

    with pytest.raises(Exit):
        _run(_ctx("check", env="test"), _ctx("deploy", env="prod"))


def test_real_command_line_hands_env_to_every_task():
    """Through the real invoke program and the project's tasks.py and invoke.yaml."""
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "config.check", "config.show", "--json", "--env=staging"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("staging: configuration is valid")
    assert '"name": "staging"' in out.stdout


def test_real_command_line_bad_env_fails_cleanly():
    out = subprocess.run([sys.executable, "-m", "invoke", "config.check", "--env=nope"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1
    assert "unknown environment 'nope'" in out.stderr
    assert "Traceback" not in out.stderr
