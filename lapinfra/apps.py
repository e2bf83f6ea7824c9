"""Applications: apps/<name>/app.yml run as swarm services on the worker nodes.

`invoke app.deploy NAME` pushes the app's image into the environment's registry as
``apps/<name>:<image id>`` and creates or updates the swarm service ``<name>``:

- replicas on workers only (constraint node.role==worker, lapinfra/swarm.py), each replica
  named ``<node>-<slot>`` (its host name), on the overlay network the load balancer
  is attached to; endpoint mode dnsrr, so ``tasks.<name>`` resolves to each replica's
  own address (nginx keeps sessions on one replica: images/proxy/upstreams);
- pulled from ``docker.<domain>:<port>`` over TLS with the environment's CA (which
  every node trusts) and the registry's credentials, handed to the workers by the
  manager (the X-Registry-Auth of the service);
- rolling updates one replica at a time, the new one started before the old one
  stops; a new replica that fails its health check within ``update.monitor``
  seconds makes the swarm roll the whole service back by itself, and the deploy
  exits 1 saying so.

What is deployed is recorded in apps.json (records.APPS) on the master (backed up with
/data), so `invoke start` (and a deploy: its phase ``apps``, which plan shows) brings back an
app whose service is gone (a master rebuilt by dr.recover) from the node's state alone.
"""
from __future__ import annotations

import getpass
import json
import time

from . import images, records, services as svc
from . import swarm
from .actions import RestoreApp
from .errors import LapinfraError
from .registry import push_image, registry_has, wait_registry
from .session import MasterSession

RECORD = records.APPS
NS = 1_000_000_000


def service_spec(env, name: str, image_ref: str) -> dict:
    """Keyword arguments of docker's services.create for one application (pure data)."""
    from docker.types import EndpointSpec, Healthcheck, RollbackConfig, ServiceMode, UpdateConfig

    app = env.apps[name]
    h, u = app.health, app.update
    return {
        "image": image_ref,
        "name": name,
        "mode": ServiceMode("replicated", replicas=app.replicas),
        "networks": [swarm.APPS_NETWORK],
        "constraints": ["node.role==worker"],
        "hostname": "{{.Node.Hostname}}-{{.Task.Slot}}",
        "healthcheck": Healthcheck(test=["CMD", *h.cmd], interval=h.interval * NS, timeout=h.timeout * NS,
                                   retries=h.retries, start_period=h.start_period * NS),
        "update_config": UpdateConfig(parallelism=u.parallelism, delay=u.delay * NS, failure_action="rollback",
                                      monitor=u.monitor * NS, max_failure_ratio=0, order="start-first"),
        "rollback_config": RollbackConfig(parallelism=u.parallelism, delay=u.delay * NS, failure_action="pause",
                                          monitor=u.monitor * NS, order="start-first"),
        "endpoint_spec": EndpointSpec(mode="dnsrr"),
        "labels": {"lapinfra.env": env.name, "lapinfra.app": name},
    }


def _app(env, name: str):
    if not env.workers:
        raise LapinfraError(f"nodes/{env.name}.yml declares no worker nodes: applications run on workers (role: worker)")
    if name not in env.apps:
        known = ", ".join(sorted(env.apps)) or "none"
        raise LapinfraError(f"apps/{name}/app.yml: no such application; applications: {known}")
    return env.apps[name]


def deploy(project, name: str, image: str | None = None, timeout: float = 300) -> dict:
    """Push the app's image and roll the service to it; raise when the swarm rolled it back."""
    env, reporter = project.env, project.reporter
    app = _app(env, name)
    built = images.built_image(project.docker, image or app.image)
    tag = built.id.split(":")[-1][:12]
    with MasterSession(project) as s:
        swarm.ensure(project, s.docker)
        wait_registry(s)
        if registry_has(s, f"apps/{name}", tag):
            reporter.info(f"apps/{name}:{tag}: already in the registry")
        else:
            push_image(s, project.docker, built, f"apps/{name}", tag, reporter)
        ref = f"{s.registry_host}/apps/{name}:{tag}"
        outcome = apply(s, name, ref, reporter, timeout)
        if name in env.routed_apps:
            wait_served(env, name, reporter)
        if outcome != "unchanged" or name not in read_record(s):
            record = read_record(s)
            record[name] = {"image": ref, "source": image or app.image, "id": built.id,
                            "replicas": app.replicas, "by": getpass.getuser(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            s.put(RECORD, json.dumps(record, indent=2, sort_keys=True).encode(), mode=0o644)
    return {"app": name, "image": ref, "outcome": outcome}


def apply(s, name: str, ref: str, reporter, timeout: float = 300) -> str:
    """Create the service, update it, or leave it; wait until it converged. Returns
    created, updated or unchanged; raises when the update was rolled back."""
    import docker.errors

    _login(s)
    spec = service_spec(s.env, name, ref)
    try:
        service = s.docker.services.get(name)
    except docker.errors.NotFound:
        with reporter.step(f"app {name}: create {s.env.apps[name].replicas} replicas of {ref}"):
            service = s.docker.services.create(**spec)
            wait_converged(service, s.env.apps[name].replicas, timeout)
        return "created"
    current = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
    replicas = service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
    if current == ref and replicas == s.env.apps[name].replicas:
        reporter.info(f"app {name}: already runs {ref}")
        wait_converged(service, replicas, timeout)
        return "unchanged"
    with reporter.step(f"app {name}: rolling update to {ref}"):
        before = (service.attrs.get("UpdateStatus") or {}).get("StartedAt")
        service.update(**spec)
        wait_update(service, before, timeout)
        wait_converged(service, s.env.apps[name].replicas, timeout)
    return "updated"


def wait_served(env, name: str, reporter, timeout: float = 30.0, get=None) -> bool:
    """Until the load balancer on the master answers for <name>.<domain> from the app (not with
    its own 502: it reads the replicas' addresses every 2 s, and answers 502 until it has one),
    so that "served as" is true when deploy says it. Past ``timeout`` a warning, not an error:
    the swarm runs the app, and `invoke app.status` shows it."""
    import requests

    host, url = f"{name}.{env.domain}", f"http://{env.master.ip}:80/"
    with requests.Session() as session:
        session.trust_env = False       # straight to the master: no proxy of the workstation's
        get = get or (lambda: session.get(url, headers={"Host": host}, timeout=5).status_code)
        deadline, last = time.monotonic() + timeout, None
        while True:
            try:
                last = get()
                if last < 500:
                    return True
            except requests.RequestException as exc:
                last = type(exc).__name__
            if time.monotonic() > deadline:
                reporter.warn(f"app {name}: the load balancer did not answer for {host} within {timeout:.0f}s "
                              f"(last: {last}); `invoke app.status --env={env.name}`, and the proxy's log: "
                              f"`invoke node.ssh --env={env.name} -- docker logs infra_proxy`")
                return False
            time.sleep(0.5)


def wait_update(service, before: str | None, timeout: float) -> None:
    """Until the swarm finished the update that started after ``before`` (the previous
    update's start); a rollback is an error that says why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.reload()
        status = service.attrs.get("UpdateStatus") or {}
        state = status.get("State") if status.get("StartedAt") != before else None
        if state == "completed":
            return
        if state in ("rollback_completed", "rollback_paused", "paused"):
            why = status.get("Message", "")
            failed = _failed_tasks(service)
            raise LapinfraError(f"app {service.name}: the update failed and the swarm "
                                f"{'rolled it back' if state == 'rollback_completed' else 'stopped it (' + state + ')'}: "
                                f"{why}" + (f"; failed replicas: {failed}" if failed else ""))
        time.sleep(1)
    raise LapinfraError(f"app {service.name}: the update did not finish within {timeout:.0f}s; see `invoke app.status`")


def wait_converged(service, replicas: int, timeout: float) -> None:
    """Until ``replicas`` tasks of the service's current spec run (healthy, where checked)."""
    deadline = time.monotonic() + timeout
    while True:
        running = [t for t in service.tasks(filters={"desired-state": "running"}) if t["Status"]["State"] == "running"]
        if len(running) >= replicas:
            return
        if time.monotonic() > deadline:
            raise LapinfraError(f"app {service.name}: {len(running)} of {replicas} replicas run after {timeout:.0f}s"
                                + (f"; failed: {_failed_tasks(service)}" if _failed_tasks(service) else ""))
        time.sleep(1)


def _failed_tasks(service) -> str:
    failed = [t for t in service.tasks() if t["Status"]["State"] in ("failed", "rejected")]
    return "; ".join(sorted({f"{t['Status'].get('Err') or t['Status'].get('Message', '')}" for t in failed})[:3])


def read_record(s) -> dict:
    return s.read_json(RECORD) or {}


def restore(s, action: RestoreApp, reporter) -> None:
    """Create the service of a recorded app again (decisions.restore_actions decides which: those the
    swarm lacks, e.g. on a master rebuilt by dr.recover); the swarm brings its replicas up on its own
    time (the infrastructure's start never waits for workers, which may be down)."""
    _login(s)
    s.docker.services.create(**service_spec(s.env, action.name, action.image))
    reporter.info(f"app {action.name}: service created again from {RECORD}")


def _login(s) -> None:
    """The registry's pull account in the manager's client: the swarm hands it to the
    workers with the service (X-Registry-Auth), so that they can pull, and no more
    (the push account stays on the workstation)."""
    s.docker.login(**pull_auth(s.p.secrets), registry=s.registry_host)


def pull_auth(secrets) -> dict:
    """The credentials the workers get: the registry's pull-only account."""
    return {"username": secrets.registry_pull_user, "password": secrets.registry_pull_password.reveal()}


def remove(project, name: str) -> None:
    import docker.errors

    _app(project.env, name)
    with MasterSession(project) as s:
        try:
            s.docker.services.get(name).remove()
        except docker.errors.NotFound:
            project.reporter.info(f"app {name}: no service on {project.env.master.name}")
        record = read_record(s)
        if record.pop(name, None) is not None:
            s.put(RECORD, json.dumps(record, indent=2, sort_keys=True).encode(), mode=0o644)


def status(project) -> list[dict]:
    """Each deployed app: image, replicas running of wanted, and where they run."""
    import docker.errors

    rows = []
    with MasterSession(project) as s:
        node_names = {n.id: n.attrs["Description"]["Hostname"] for n in s.docker.nodes.list()} if project.env.workers else {}
        for name, entry in sorted(read_record(s).items()):
            try:
                service = s.docker.services.get(name)
            except docker.errors.NotFound:
                rows.append({"app": name, "image": entry["image"], "running": 0, "replicas": entry["replicas"], "nodes": [], "update": "service missing"})
                continue
            tasks = [t for t in service.tasks(filters={"desired-state": "running"}) if t["Status"]["State"] == "running"]
            rows.append({
                "app": name, "image": service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0],
                "running": len(tasks), "replicas": service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas"),
                "nodes": sorted(node_names.get(t.get("NodeID"), "?") for t in tasks),
                "update": (service.attrs.get("UpdateStatus") or {}).get("State", "-"),
            })
    return rows
