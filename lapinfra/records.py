"""The records lapinfra keeps on the master, below /data/lapinfra: where they are, and the
stamp (who, when) each entry carries.

- ``release.json``    the release record: what runs (release, image ids, config hashes)
- ``releases.jsonl``  the audit log of deploys and rollbacks (lapinfra/promote.py)
- ``verified.jsonl``  the verification runs (lapinfra/verify.py), which promotion's gate reads

The two logs are audit logs that no restore rewinds (services.AUDIT_LOGS).
"""
from __future__ import annotations

import getpass
import socket
import time

from . import services as svc

RELEASE = f"{svc.STATE_DIR}/release.json"
RELEASES = f"{svc.STATE_DIR}/releases.jsonl"
VERIFIED = f"{svc.STATE_DIR}/verified.jsonl"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"
