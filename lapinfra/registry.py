"""The node's registry, through the session's tunnel: ask it, name an image twice, push into it.

Every request authenticates with the push account (env.registry.user) and verifies the
registry's certificate against the environment's CA. Pushes go from a workstation
engine's client to ``127.0.0.1:<tunnel>/<repository>``.
"""
from __future__ import annotations

import time

import requests

from .errors import LapinfraError
from .session import MasterSession


def wait_registry(s: MasterSession, timeout: float = 60) -> None:
    url = f"https://127.0.0.1:{s.registry_port}/v2/"
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, auth=_auth_tuple(s), verify=str(s.p.secrets.path("ca.crt")), timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise LapinfraError(f"registry on {s.env.master.name} did not answer within {timeout:.0f}s ({last}); see `invoke node.ssh --env={s.env.name} -- docker logs infra_registry`")


def _auth_tuple(s: MasterSession) -> tuple[str, str]:
    a = s.auth()
    return a["username"], a["password"]


def registry_has(s: MasterSession, repository: str, tag: str = "latest") -> bool:
    return _registry(s, "HEAD", f"{repository}/manifests/{tag}", headers={"Accept": MANIFEST_V2}).status_code == 200


MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _registry(s: MasterSession, method: str, path: str, **kw):
    return requests.request(method, f"https://127.0.0.1:{s.registry_port}/v2/{path}", auth=_auth_tuple(s),
                            verify=str(s.p.secrets.path("ca.crt")), timeout=60, **kw)


def copy_in_registry(s: MasterSession, source: str, target: str) -> bool:
    """Give an image already in the registry a second repository name without uploading it:
    mount its blobs from ``source`` into ``target`` and put the same manifest there."""
    got = _manifest(s, source)
    if got is None:
        return False
    manifest = got.json()
    if _mount(s, source, target, [manifest["config"], *manifest["layers"]]) != len(manifest["layers"]) + 1:
        return False
    put = _registry(s, "PUT", f"{target}/manifests/latest", data=got.content, headers={"Content-Type": MANIFEST_V2})
    return put.status_code == 201


def mount_layers(s: MasterSession, source: str, target: str) -> int:
    """Mount the layers of ``source``'s image into the repository ``target`` before a push to it; how
    many. The workstation's engine asks the target repository for each layer it pushed before (by the
    digest it remembers) and uploads only those it does not find there. Without this every push to a
    new release's repository sent each layer in full: the engine offers a mount only from repositories
    of the same registry address, and the tunnel's port differs from one session to the next."""
    got = _manifest(s, source)
    return 0 if got is None else _mount(s, source, target, got.json()["layers"])


def _manifest(s: MasterSession, repository: str):
    got = _registry(s, "GET", f"{repository}/manifests/latest", headers={"Accept": MANIFEST_V2})
    return got if got.status_code == 200 and got.headers.get("Content-Type") == MANIFEST_V2 else None


def _mount(s: MasterSession, source: str, target: str, blobs: list[dict]) -> int:
    """Mount ``blobs`` of ``source`` into ``target``, stopping at the first the registry refuses; how many."""
    for count, blob in enumerate(blobs):
        mounted = _registry(s, "POST", f"{target}/blobs/uploads/", params={"mount": blob["digest"], "from": source})
        if mounted.status_code != 201:
            return count
    return len(blobs)


def push_image(s: MasterSession, workstation, image, repository: str, tag: str, reporter) -> None:
    """One image of the workstation's engine (``workstation``: its Docker client) into the node's
    registry, through the tunnel."""
    with reporter.step(f"push {repository}:{tag}"):
        push(s, workstation, image, repository, tag)


def push(s: MasterSession, workstation, image, repository: str, tag: str) -> tuple[int, int]:
    """``image`` of the workstation's engine (``workstation``: its Docker client) as ``repository:tag``
    of the node's registry; (layers sent, layers in all): a layer the repository holds already (or
    the registry mounts from another) is not sent."""
    target = f"127.0.0.1:{s.registry_port}/{repository}"
    workstation.api.tag(image.id, target, tag)
    layers: dict[str, str] = {}
    try:
        for chunk in workstation.api.push(target, tag=tag, auth_config=s.auth(), stream=True, decode=True):
            if "error" in chunk:
                raise LapinfraError(f"push of {repository}:{tag} failed: {chunk['error']}")
            if chunk.get("id") and chunk.get("status"):
                layers[chunk["id"]] = chunk["status"]
    finally:
        workstation.api.remove_image(f"{target}:{tag}", noprune=True)
    return layer_counts(layers)


def layer_counts(last_status: dict[str, str]) -> tuple[int, int]:
    """(sent, in all) from the last status the engine gave each layer of a push: "Pushed" was
    sent; "Layer already exists" and "Mounted from ..." were not."""
    finished = {layer: status for layer, status in last_status.items()
                if status == "Pushed" or status == "Layer already exists" or status.startswith("Mounted from")}
    return sum(status == "Pushed" for status in finished.values()), len(finished)
