"""The records lapinfra keeps below /data/lapinfra (every path there is named here, and
only here), the release record as a type, and the stamp (who, when) each entry carries.

On the master (``services.STATE_DIR``):

- ``release.json``    the release record (`Release`): what runs (release, image ids, config hashes)
- ``releases.jsonl``  the audit log of deploys and rollbacks (lapinfra/promote.py)
- ``verified.jsonl``  the verification runs (lapinfra/verify.py), which promotion's gate reads
- ``apps.json``       the applications deployed on the workers (lapinfra/apps.py)
- ``ssh/``            the node's SSH host key, kept on /data so that it survives the node

The two logs are audit logs that no restore rewinds (AUDIT_LOGS). On the backup node,
``/data/lapinfra/vault/drill.json`` is its last restore drill (nodes/image/lapvault).
"""
from __future__ import annotations

import getpass
import json
import posixpath
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Mapping

from . import services as svc
from .errors import LapinfraError

RELEASE = f"{svc.STATE_DIR}/release.json"
RELEASES = f"{svc.STATE_DIR}/releases.jsonl"
VERIFIED = f"{svc.STATE_DIR}/verified.jsonl"
APPS = f"{svc.STATE_DIR}/apps.json"
HOST_KEYS = f"{svc.STATE_DIR}/ssh"
HOST_KEY_PUB = f"{HOST_KEYS}/ssh_host_ed25519_key.pub"
DRILL_ON_BACKUP_NODE = f"{svc.STATE_DIR}/vault/drill.json"   # the backup node's own /data


def below_data(path: str) -> str:
    """``path`` (below /data) relative to /data, as a restore's --keep and a snapshot name it."""
    return posixpath.relpath(path, svc.DATA)


STATE_IN_DATA = below_data(svc.STATE_DIR)     # "lapinfra", as a snapshot and a restore's --keep name it
HOST_KEYS_IN_DATA = below_data(HOST_KEYS)
# The audit logs below /data that no restore rewinds (lapinfra/promote.py, lapinfra/verify.py).
AUDIT_LOGS = (below_data(RELEASES), below_data(VERIFIED))


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


# ---- the release record -----------------------------------------------------------------

@dataclass(frozen=True)
class ReleasedImage:
    """One image of a release: its repository in the node's registry (``infra/<release>/<name>``)
    and its image id, which is what may run."""
    repository: str
    id: str


@dataclass(frozen=True)
class Release:
    """``release.json``: the release that runs on the master, each image by id, each
    service's config hash, who deployed it and when.

    `load` takes what any version wrote: a missing optional field gets its default, and
    keys this version does not know are kept in ``other`` and written back by `dump`, so
    that ``dump(load(text)) == text`` for every record a deploy wrote."""
    release: str
    images: Mapping[str, ReleasedImage] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)      # service name -> config hash
    deployed_by: str | None = None
    deployed_at: str | None = None
    other: Mapping[str, object] = field(default_factory=dict)    # keys of other versions, as they were

    FIELDS = ("release", "images", "config", "deployed_by", "deployed_at")

    @classmethod
    def load(cls, text: str | bytes, where: str = RELEASE) -> "Release":
        """The record in ``text`` (the content of ``where``, which an error names)."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise LapinfraError(f"{where}: the release record is not JSON ({exc})") from None
        return cls.from_dict(doc, where)

    @classmethod
    def from_dict(cls, doc, where: str = RELEASE) -> "Release":
        def bad(what: str) -> LapinfraError:
            return LapinfraError(f"{where}: the release record {what}")

        if not isinstance(doc, dict):
            raise bad(f"is not a JSON object but {type(doc).__name__}")
        if not isinstance(doc.get("release"), str) or not doc["release"]:
            raise bad("names no release (key `release`)")
        images = doc.get("images") or {}
        if not isinstance(images, dict):
            raise bad("has `images` that is not an object")
        typed = {}
        for name, image in images.items():
            if not (isinstance(image, dict) and isinstance(image.get("repository"), str) and isinstance(image.get("id"), str)):
                raise bad(f"has `images.{name}` without its `repository` and `id`")
            typed[name] = ReleasedImage(image["repository"], image["id"])
        config = doc.get("config") or {}
        if not isinstance(config, dict) or not all(isinstance(v, str) for v in config.values()):
            raise bad("has `config` that is not an object of config hashes")
        for key in ("deployed_by", "deployed_at"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise bad(f"has `{key}` that is not a string")
        return cls(release=doc["release"], images=typed, config=dict(config), deployed_by=doc.get("deployed_by"),
                   deployed_at=doc.get("deployed_at"),
                   other={k: v for k, v in doc.items() if k not in cls.FIELDS})

    def to_dict(self) -> dict:
        """The record as JSON data, in the order a deploy writes it (unknown keys last)."""
        doc = {"release": self.release,
               "images": {n: {"repository": i.repository, "id": i.id} for n, i in self.images.items()},
               "config": dict(self.config)}
        for key in ("deployed_by", "deployed_at"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        return {**doc, **self.other}

    def dump(self) -> str:
        """``release.json``'s content, as every version has written it (indented by two)."""
        return json.dumps(self.to_dict(), indent=2)

    def with_config(self, config: Mapping[str, str]) -> "Release":
        return replace(self, config=dict(config))

    def image_ids(self) -> dict[str, str]:
        """Image name -> id: what verified.jsonl records of a run and the gate compares."""
        return {name: image.id for name, image in self.images.items()}


def new_release(release: str, images: Mapping[str, str], config: Mapping[str, str]) -> Release:
    """The record of a deploy of ``release`` now: ``images`` name -> image id, in the
    node's registry as ``infra/<release>/<name>``."""
    return Release(release, {n: ReleasedImage(f"infra/{release}/{n}", i) for n, i in images.items()}, dict(config),
                   deployed_by=getpass.getuser(), deployed_at=now())


def read_release(session) -> Release | None:
    """The master's release record, through ``session`` (a MasterSession: its ``read_json``);
    None when nothing was deployed there yet."""
    doc = session.read_json(RELEASE)
    return None if doc is None else Release.from_dict(doc, RELEASE)


def running(session) -> str | None:
    """The release the master runs, by its record (None: nothing deployed)."""
    record = read_release(session)
    return record.release if record else None


def write_release(session, record: Release) -> None:
    """Make ``record`` the master's release record (written aside, then renamed: MasterSession.put)."""
    session.put(RELEASE, record.dump().encode())

