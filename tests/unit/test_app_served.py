"""`invoke app.deploy` says "served as <name>.<domain>" only once the load balancer answers for the
app: it answers 502 until its upstreams file lists a replica (read every 2 s)."""
from types import SimpleNamespace

from lapinfra import apps
from lapinfra.report import Recorder

ENV = SimpleNamespace(name="test", domain="internal", master=SimpleNamespace(ip="172.28.10.10"))


def test_deploy_waits_through_the_proxys_502_until_the_app_answers(monkeypatch):
    monkeypatch.setattr(apps.time, "sleep", lambda s: None)
    answers = iter([502, 502, 200])
    reporter = Recorder()
    assert apps.wait_served(ENV, "hello", reporter, get=lambda: next(answers)) is True
    assert next(answers, None) is None          # asked until the 200, not after
    assert not [line for line in reporter.lines if line.startswith("! ")]


def test_an_app_the_proxy_never_serves_is_a_warning_that_says_where_to_look(monkeypatch):
    monkeypatch.setattr(apps.time, "sleep", lambda s: None)
    reporter = Recorder()
    assert apps.wait_served(ENV, "hello", reporter, timeout=0, get=lambda: 502) is False
    warning = next(line for line in reporter.lines if line.startswith("! "))
    assert "hello.internal" in warning and "last: 502" in warning and "docker logs infra_proxy" in warning
