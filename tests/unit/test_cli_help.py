"""The CLI explains itself: every task's --help names its arguments, marks the required
ones, shows every default and gives an example; bad environment names say which flag."""
import inspect
import os
import subprocess
import sys

import pytest
from invoke import Exit
from invoke.parser import Argument, ParserContext

from lapinfra.invoke_ext import chosen_env
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))
import tasks as tasks_module  # noqa: E402  (tasks.py: the namespace)

# tasks/verify.py is another engineer's: its docstring gains an example there
NOT_OURS = {"test"}


def _all_tasks():
    ns = tasks_module.ns
    return sorted((name, ns[name]) for name in ns.task_names)


ALL = _all_tasks()


def _invoke(*args, **env):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**{k: v for k, v in os.environ.items() if k != "LAPINFRA_ENV"}, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("name,t", ALL, ids=[n for n, _ in ALL])
def test_every_argument_is_marked_required_or_shows_its_default(name, t):
    params = list(inspect.signature(t.body).parameters.values())[1:]
    arguments = _arguments(t)
    assert len(arguments) == len(params)
    for arg in arguments:
        assert arg.help, f"{name}: --{arg.name} has no help text"
        assert "required" in arg.help or "default" in arg.help, f"{name}: --{arg.name}: neither required nor a default: {arg.help!r}"


def _arguments(t):
    """A task's arguments as invoke parses them (get_arguments hands each help text out once: a copy)."""
    import copy

    twin = copy.copy(t)
    twin.help = dict(t.help)
    return twin.get_arguments()


@pytest.mark.parametrize("name,t", [(n, t) for n, t in ALL if n not in NOT_OURS], ids=[n for n, _ in ALL if n not in NOT_OURS])
def test_every_task_gives_an_example(name, t):
    doc = inspect.cleandoc(t.__doc__ or "")
    assert "Example" in doc and "invoke " in doc.split("Example", 1)[1], f"{name}: no example in its docstring"


def test_positional_arguments_say_they_are_required_and_positional():
    out = _invoke("--help", "dns.register").stdout
    assert "--name" in out and "required; may also be given without its flag" in " ".join(out.split())
    assert "invoke dns.register office.host" in out


@pytest.mark.parametrize("name,flag", [("restore", "snapshot"), ("snapshot.fetch", "from")])
def test_required_flags_are_marked(name, flag):
    out = " ".join(_invoke("--help", name).stdout.split())
    line = out.split(f"--{flag}=STRING", 1)[1].split(" -", 1)[0]
    assert "(required)" in line


def test_help_shows_the_defaults_of_flags_without_one_in_their_text():
    out = " ".join(_invoke("--help", "snapshot.create").stdout.split())
    assert "(default: manual)" in out
    assert "default: $LAPINFRA_ENV when set, else test" in out


def test_build_and_images_build_are_one_task_with_one_text():
    ns = tasks_module.ns
    assert ns["build"] == ns["images.build"]              # named twice on a command line, it runs once
    listed = _invoke("--list").stdout
    assert listed.count("Build images/*/ in FROM order") == 1
    assert "The same task as `build`" in listed
    for name in ("build", "images.build"):                  # each name shows every flag's help
        assert "comma-separated image names" in _invoke("--help", name).stdout


def _env_ctx(value):
    ctx = ParserContext(name="config.check", args=[Argument(names=("env",), kind=str)])
    ctx.args["env"].value = value
    return ctx


def test_an_empty_env_is_refused_not_taken_for_the_default():
    with pytest.raises(Exit, match="--env is empty"):
        chosen_env([_env_ctx("")])
    run = _invoke("config.check", "--env=")
    assert run.returncode == 2 and "--env is empty" in run.stderr and "configuration is valid" not in run.stdout


def test_lapinfra_env_is_the_default_env():
    run = _invoke("config.check", LAPINFRA_ENV="staging")
    assert run.returncode == 0 and run.stdout.startswith("staging: configuration is valid")


@pytest.mark.parametrize("args,flag", [(["--from=nosuch"], "--from"), (["--from=test", "--to=nosuch"], "--to")])
def test_fetch_names_the_flag_of_an_unknown_environment(args, flag):
    run = _invoke("snapshot.fetch", *args)
    assert run.returncode == 1
    assert f"{flag}: unknown environment 'nosuch'" in run.stderr and "--env" not in run.stderr


def test_an_unknown_lapinfra_env_is_named_as_such():
    run = _invoke("config.check", LAPINFRA_ENV="nosuch")
    assert run.returncode == 1
    assert "$LAPINFRA_ENV: unknown environment 'nosuch'" in run.stderr
    run = _invoke("config.check", "--env=nosuch", LAPINFRA_ENV="staging")
    assert "--env: unknown environment 'nosuch'" in run.stderr
