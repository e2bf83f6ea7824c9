"""The base image every image builds on: pulled when possible, else debootstrapped."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LapinfraError

if TYPE_CHECKING:  # pydantic is slow to import; the annotations alone need it
    from .config import BaseImage


def exists(client, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure(client, spec: BaseImage, reporter, force: bool = False) -> str:
    """Make sure ``spec.tag`` exists; return how it was obtained."""
    if exists(client, spec.tag) and not force:
        reporter.info(f"{spec.tag}: present")
        return "present"
    if spec.pull and _try_pull(client, spec, reporter):
        return "pulled"
    with reporter.step(f"debootstrap {spec.suite} from {spec.mirror} into {spec.tag}"):
        _debootstrap(client, spec)
    return "debootstrapped"


def _try_pull(client, spec: BaseImage, reporter) -> bool:
    outcome: dict = {}

    def pull():
        try:
            outcome["image"] = client.images.pull(spec.pull)
        except Exception as exc:  # noqa: BLE001 - any failure means "fall back"
            outcome["error"] = exc

    with reporter.step(f"pull {spec.pull} (at most {spec.pull_timeout}s)"):
        worker = threading.Thread(target=pull, daemon=True)
        worker.start()
        worker.join(spec.pull_timeout)
    if "image" in outcome:
        outcome["image"].tag(*split_tag(spec.tag))
        return True
    reporter.warn(f"cannot pull {spec.pull} ({outcome.get('error', 'timed out')}); building it with debootstrap")
    return False


def _debootstrap(client, spec: BaseImage) -> None:
    if not spec.mirror:
        raise LapinfraError("no Debian mirror for debootstrap: the workstation's apt sources name none (a URI ending in /debian); "
                            "set base_image.mirror in environments/base.yml or the environment's env.yml")
    if shutil.which("debootstrap") is None:
        raise LapinfraError("debootstrap is not installed: `apt-get install debootstrap` (or set base_image.pull)")
    with tempfile.TemporaryDirectory(prefix="lapinfra-base-") as tmp:
        rootfs, tarball = Path(tmp, "rootfs"), Path(tmp, "rootfs.tar")
        run = subprocess.run(
            ["debootstrap", "--variant=minbase", spec.suite, str(rootfs), spec.mirror],
            capture_output=True, text=True,
        )
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).splitlines()[-15:])
            raise LapinfraError(f"debootstrap of {spec.suite} failed:\n{tail}")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        repo, tag = split_tag(spec.tag)
        client.api.import_image(src=str(tarball), repository=repo, tag=tag, changes=['CMD ["/bin/bash"]'])


def split_tag(tag: str) -> tuple[str, str]:
    if ":" in tag.rsplit("/", 1)[-1]:
        repo, t = tag.rsplit(":", 1)
        return repo, t
    return tag, "latest"
