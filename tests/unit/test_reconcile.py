"""reconcile's decision for an existing container (the Docker client is a stand-in: the e2e tier runs the real one)."""
from types import SimpleNamespace

from lapinfra import phases, services as svc
from lapinfra.report import Recorder


class Client:
    def __init__(self, status, label):
        self.started = self.ran = self.removed = 0
        outer = self

        class Container(SimpleNamespace):
            def start(self):
                outer.started += 1

            def remove(self, force=False):
                outer.removed += 1

        self.containers = SimpleNamespace(get=lambda name: Container(status=status, labels={svc.SPEC_LABEL: label},
                                                                                  attrs={"NetworkSettings": {"Networks": {"infra": {}}}}),
                                          run=lambda **kw: setattr(outer, "ran", outer.ran + 1))


KWARGS = {"name": "infra_dns", "labels": {svc.SPEC_LABEL: "abc"}}


def test_a_container_paused_by_a_snapshot_is_kept_not_started():
    client = Client("paused", "abc")
    assert phases.reconcile(client, KWARGS, Recorder()) == "kept"
    assert client.started == client.ran == client.removed == 0


def test_a_stopped_unchanged_container_is_started_and_a_changed_one_recreated():
    stopped = Client("exited", "abc")
    assert phases.reconcile(stopped, KWARGS, Recorder()) == "started" and stopped.started == 1
    changed = Client("paused", "old")
    assert phases.reconcile(changed, KWARGS, Recorder()) == "recreated" and changed.removed == changed.ran == 1
