"""lap-infra's invoke tasks: this file only wires the namespaces together.

invoke loads ``tasks.py`` before a ``tasks/`` package, and inside it ``from tasks
import x`` would fail because ``tasks`` is this module. We solve that on purpose:
this module declares the ``tasks/`` folder as its own package path (``__path__``),
which makes it a package whose submodules live in ``tasks/``. ``tasks/`` has no
``__init__.py``, so nothing else can claim the name. The logic itself lives in
the ``lapinfra`` package; each module in ``tasks/`` is one thin namespace.
The executor that hands one ``--env`` to every task is set in ``invoke.yaml``.
"""
from pathlib import Path

from invoke import Collection

__path__ = [str(Path(__file__).resolve().with_name("tasks"))]

from tasks import app, config, deploy, dns, images, node, render, secrets, snapshot, status, verify  # noqa: E402

ns = Collection()
for module in (app, config, dns, images, node, secrets, snapshot):
    ns.add_collection(module.ns)
ns.add_collection(snapshot.backup_ns)
ns.add_collection(snapshot.dr_ns)
ns.add_task(snapshot.restore)
ns.add_task(images.build)
ns.add_task(render.render)
ns.add_task(verify.test)
ns.add_task(status.status)
for name in ("up", "deploy", "start", "stop", "restart", "plan", "releases", "rollback", "unlock"):
    ns.add_task(getattr(deploy, name))
