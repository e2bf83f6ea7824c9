"""What the tasks of one command line tell each other (tasks/_common.py note/noted) lives in that
command line's invoke config, not in a module: it lasts through the line's tasks (invoke merges
its config again before each), and a second command line in the same process starts without it."""
import ast

import pytest
from invoke import Config, Context

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


def _state_in_module(path):
    """Module-level names bound to an empty list, dict or set (a place to collect into), and
    every ``global`` statement: the forms module-level state shared between tasks takes."""
    tree = ast.parse(path.read_text())
    out = [f"{path.relative_to(ROOT)}:{node.lineno} global {', '.join(node.names)}"
           for node in ast.walk(tree) if isinstance(node, ast.Global)]
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
    "lapinfra/lock.py _HELD": "the environment locks this process holds: a lock is re-entrant within its process",
}


def test_no_task_or_library_module_keeps_state_in_a_module():
    found = [hit for folder in ("tasks", "lapinfra") for path in sorted((ROOT / folder).glob("*.py"))
             for hit in _state_in_module(path)
             if f"{hit.split(':')[0]} {hit.split()[-1]}" not in PROCESS_WIDE]
    assert found == [], "keep what a command line's tasks share on its context (tasks/_common.py note)"
