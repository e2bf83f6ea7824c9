"""Readiness of a recreated container: decided from its inspect data, its health command run at once."""
from pathlib import Path

import pytest

from lapinfra import phases

ROOT = Path(__file__).resolve().parents[2]


def attrs(status="running", health=None):
    state = {"Status": status, **({"Health": {"Status": health}} if health else {})}
    return {"State": state}


@pytest.mark.parametrize("inspect, expected", [
    (attrs(health="healthy"), "ready"),
    (attrs(), "ready"),                                # no health check: running is ready
    (attrs(health="starting"), "probe"),               # Docker's first check is an interval away: its port may answer
    (attrs(health="unhealthy"), "unhealthy"),          # failed its checks: wait for Docker to say otherwise
    (attrs(status="restarting", health="starting"), "restarting"),
    (attrs(status="paused", health="healthy"), "paused"),
    (attrs(status="created"), "created"),
])
def test_readiness(inspect, expected):
    assert phases.readiness(inspect) == expected


def test_the_port_of_each_service():
    from lapinfra import config, services as svc

    env = config.load(ROOT, "test")
    ports = {s.name: phases.service_port(s) for s in svc.services(env)}
    assert ports["trac"] == 8000 and ports["dns"] == 53 and ports["git"] == 22 and ports["registry"] == 5000
    assert ports["app1"] == 8080 and ports["environment"] is None


def test_the_probe_asks_each_port_and_quotes_the_names():
    script = phases.probe_script({"infra_trac": ("172.31.254.5", 8000), "infra_dns": ("172.31.254.3", 53)})
    assert script.index("infra_dns") < script.index("infra_trac")
    assert "timeout 1 bash -c '</dev/tcp/172.31.254.5/8000' 2>/dev/null && echo infra_trac" in script
    assert script.endswith("; true")


class Engine:
    """A stand-in engine: two containers whose first health check is still an interval away."""

    def __init__(self):
        self.api = self

    def inspect_container(self, name):
        return attrs(health="starting")


def test_a_starting_container_is_ready_as_soon_as_its_port_answers():
    answers = iter([set(), {"infra_dns"}, {"infra_trac"}])
    asked = []

    def accepting(names):
        asked.append(sorted(names))
        return next(answers)

    phases.wait_healthy(Engine(), ["infra_dns", "infra_trac"], timeout=5, poll=0, accepting=accepting)
    assert asked == [["infra_dns", "infra_trac"], ["infra_dns", "infra_trac"], ["infra_trac"]]


def test_a_container_that_never_answers_is_named_in_the_error():
    from lapinfra.errors import LapinfraError

    with pytest.raises(LapinfraError, match=r"infra_dns \(starting\)"):
        phases.wait_healthy(Engine(), ["infra_dns"], timeout=0.05, poll=0.01, accepting=lambda names: set())


def test_push_decisions_send_only_what_the_registry_lacks():
    from types import SimpleNamespace as NS

    images = {"dns": NS(id="sha256:d"), "git": NS(id="sha256:g"), "trac": NS(id="sha256:t")}
    present = {"sha256:d": "infra/r1/dns", "sha256:g": "infra/r1/git"}
    registry = {"infra/r2/trac", "infra/r1/dns"}
    assert phases.push_decisions(images, "r2", present, registry.__contains__) == {
        "dns": ("tag", "infra/r1/dns"),   # same image in the current release: tagged, nothing uploaded
        "git": ("push",),                 # the current release names it, but the registry lost it
        "trac": ("have",),
    }
