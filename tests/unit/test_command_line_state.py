"""What the tasks of one command line share (tasks/_common.py: the facts of note/noted, the
Projects of project) lives in that command line's invoke config, not in a module: it lasts through
the line's tasks (invoke merges its config again before each), and a second command line in the
same process starts without it."""
import ast
from types import SimpleNamespace

import pytest
from invoke import Collection, Config, Context, task
from invoke.parser import Argument, ParserContext

from lapinfra.invoke_ext import EnvExecutor

from tests.conftest import ROOT
from tests.unit.test_guarded_tasks import load_tasks


def test_a_fact_lasts_for_the_command_line_and_no_longer():
    common = load_tasks("_common")
    line = Config()
    common.note(Context(config=line), "built", "test")
    line.load_collection({})          # what the executor does before each task of the line
    line.load_shell_env()
    later = Context(config=line)
    assert common.noted(later, "built", "test") and not common.noted(later, "built", "prod")
    assert not common.noted(later, "verified", "test")
    common.note(later, "built", None)          # no --env: the default environment
    assert common.noted(Context(config=line), "built", None) and common.noted(Context(config=line), "built", "test")
    assert not common.noted(Context(), "built", "test")        # another command line
    assert not common.noted(None, "built", "test")


def test_only_the_named_facts_are_kept():
    with pytest.raises(ValueError, match="'build' is not one of"):
        load_tasks("_common").note(Context(), "build", "test")


def test_the_tasks_of_a_command_line_share_one_project_per_environment(monkeypatch):
    """`invoke build deploy --env=staging` through invoke's own executor: build (deploy's pre-task
    too) and deploy get one Project of staging, made once; the next command line makes its own."""
    common = load_tasks("_common")
    made, seen = [], []
    monkeypatch.setattr(common, "load_project", lambda env: made.append(env) or SimpleNamespace(name=env))

    @task
    def build(c, env=None):
        seen.append(common.project(c, env))

    @task(pre=[build])
    def deploy(c, env=None):
        seen.extend([common.project(c, env), common.project(c, "prod")])

    def command_line(*names):
        """The tasks ``names``, --env=staging given after the last, as invoke's parser hands them over."""
        contexts = [ParserContext(name=name, args=[Argument(names=("env",), kind=str)]) for name in names]
        contexts[-1].args["env"].value = "staging"
        EnvExecutor(Collection(build, deploy), config=Config()).execute(*contexts)

    command_line("build", "deploy")
    assert made == ["staging", "prod"] and seen[0] is seen[1] and seen[2].name == "prod"
    command_line("deploy")                     # its pre-task build too
    assert made == ["staging", "prod"] * 2 and seen[3] is seen[4] is not seen[0]
    assert common.project(None, "staging") is not common.project(None, "staging")      # no command line: its own


def test_the_projects_of_a_command_line_are_one_object_through_invokes_merges(monkeypatch):
    common = load_tasks("_common")
    monkeypatch.setattr(common, "load_project", lambda env: SimpleNamespace(name=env))
    line = Config()
    first = common.project(Context(config=line), "test")
    held = line[common.PROJECTS]
    line.load_collection({})          # what the executor does before each task of the line
    line.load_shell_env()
    assert line[common.PROJECTS] is held and common.project(Context(config=line), "test") is first


def _state_in_module(path):
    """Module-level names bound to an empty list, dict or set (a place to collect into), module-level
    functions that cache what they return (functools.cache, lru_cache), and every ``global``
    statement: the forms module-level state shared between tasks takes."""
    tree = ast.parse(path.read_text())
    out = [f"{path.relative_to(ROOT)}:{node.lineno} global {', '.join(node.names)}"
           for node in ast.walk(tree) if isinstance(node, ast.Global)]
    out += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}" for node in tree.body
            if isinstance(node, ast.FunctionDef)
            and any("cache" in ast.unparse(decorator) for decorator in node.decorator_list)]
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            empty = (isinstance(value, (ast.List, ast.Set)) and not value.elts) or (isinstance(value, ast.Dict) and not value.keys)
            called = (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                      and value.func.id in ("set", "list", "dict") and not value.args and not value.keywords)
            if empty or called:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                out += [f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(target)}" for target in targets]
    return out


# What a process (not a command line) holds, on purpose: each is named with why it is the process's.
PROCESS_WIDE = {
    "lapinfra/buildstamp.py _verdicts": "the engine's answer for the no-op build, asked once per process (forget() drops it)",
    "lapinfra/secrets.py _tsig_key_class": "a class made once, on dnspython's first use: it holds no environment's data",
    "lapinfra/status.py lapstatus": "images/status/lapstatus loaded as a module once: code, no environment's data",
    "lapinfra/lock.py _HELD": "the environment locks this process holds: a lock is re-entrant within its process",
}


def test_no_task_or_library_module_keeps_state_in_a_module():
    found = [hit for folder in ("tasks", "lapinfra") for path in sorted((ROOT / folder).glob("*.py"))
             for hit in _state_in_module(path)
             if f"{hit.split(':')[0]} {hit.split()[-1]}" not in PROCESS_WIDE]
    assert found == [], "keep what a command line's tasks share on its context (tasks/_common.py note)"
