"""Protected environments ask first: the decision as a table, and the prompt."""
import pytest

from lapinfra import confirm
from lapinfra.confirm import ASK, GO, REFUSE
from lapinfra.errors import LapinfraError
from lapinfra.report import Recorder


@pytest.mark.parametrize("protected, yes, interactive, explicit, decision", [
    (False, False, False, True, GO),      # test, staging in CI: never a prompt
    (False, False, True, True, GO),
    (False, True, False, True, GO),       # --yes is accepted everywhere
    (False, False, False, False, GO),     # snapshot.fetch's default target, not protected
    (True, False, True, True, ASK),       # prod on a terminal
    (True, False, False, True, REFUSE),   # prod in CI without --yes
    (True, True, False, True, GO),        # prod in CI with --yes
    (True, True, True, True, GO),
    (True, True, True, False, REFUSE),    # prod as a default target: never, even with --yes
    (True, False, True, False, REFUSE),
])
def test_who_must_confirm(protected, yes, interactive, explicit, decision):
    assert confirm.decide(protected, yes, interactive, explicit) == decision


def asked(answer):
    questions = []

    def ask(question):
        questions.append(question)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return ask, questions


def test_an_unprotected_environment_never_asks():
    ask, questions = asked("anything")
    confirm.require("test", False, "restore /data", interactive=True, ask=ask)
    assert questions == []


def test_without_a_terminal_a_protected_environment_refuses_and_says_how():
    with pytest.raises(LapinfraError) as refused:
        confirm.require("prod", True, "restore /data of prod", interactive=False, retry="invoke restore --env=prod")
    text = str(refused.value)
    assert "prod is protected" in text and "not a terminal" in text and "`invoke restore --env=prod --yes`" in text


def test_typing_the_environments_name_confirms():
    ask, questions = asked("prod\n")
    reporter = Recorder()
    confirm.require("prod", True, "stop every service of prod", interactive=True, ask=ask, reporter=reporter)
    assert questions and "(prod)" in questions[0]
    assert reporter.lines == ["! prod is protected: this will stop every service of prod"]


@pytest.mark.parametrize("answer", ["y", "yes", "", "Prod", EOFError(), KeyboardInterrupt()])
def test_anything_else_stops_and_changes_nothing(answer):
    ask, _ = asked(answer)
    with pytest.raises(LapinfraError, match="not confirmed.*nothing was changed"):
        confirm.require("prod", True, "stop", interactive=True, ask=ask)


def test_a_protected_default_target_must_be_named():
    with pytest.raises(LapinfraError, match=r"give it explicitly \(--to=prod\)"):
        confirm.require("prod", True, "replace prod's /data", yes=True, explicit=False, interactive=True)
