"""A make-style stamp that lets a no-op `invoke build` skip the hashing.

The full path (`lapinfra.images.Builder`) loads the configuration, hashes every
build context and reads every image's ``lapinfra.hash`` label: correct, and most of
a second. After a full `invoke build` of all images, `record` writes
``build/<env>/state/build-stamp.json``: the stat (mtime, ctime, size, mode, inode)
of every input that can change an image's hash, the base image's id and each
image's tag, hash and id. `check` is the fast path, stdlib only:

1. every recorded input still stats the same (like make: file stats, not contents);
   the inputs are the environment's three YAML files, images/ and nodes/image/
   (every folder and file: a new, removed or renamed file changes its folder's
   stat), the extra CA bundles of ``build.extra_ca_certs`` and the code that turns
   them into hashes;
2. ONE request to the Docker engine (its unix socket) confirms that each recorded
   tag still names the recorded image id, that each image still carries the
   recorded hash label and that the base image is still the recorded id.

Anything else (no stamp, another checkout, a stat that differs, an engine not on
a unix socket, any error) sends `invoke build` down the full path, which writes
the stamp again. Stats are taken before anything is read, and a stamp is not
written while an input changed less than `RACY_NS` before that: a later change in
the same clock tick could otherwise keep the recorded stat (git's "racy clean").
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .envname import NAME, resolve_env

VERSION = 1
HASH_LABEL = "lapinfra.hash"  # = lapinfra.images.HASH_LABEL (importing images.py costs tarfile)
RACY_NS = 2_000_000_000
DEFAULT_SOCKET = "/var/run/docker.sock"
HERE = Path(__file__).resolve().parent
# The code that reads the inputs and turns them into tags and hashes.
CODE = tuple(HERE / f for f in ("buildstamp.py", "envname.py", "config.py", "project.py", "images.py", "base.py"))


def stamp_path(root: Path, env: str) -> Path:
    return Path(root).resolve() / "build" / env / "state" / "build-stamp.json"


def stat_of(path: str | Path) -> list[int] | None:
    """What make would compare, and more: a content change moves mtime or ctime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode, st.st_ino]


def input_paths(root: Path, env: str) -> list[Path]:
    """Every file and folder an image hash can depend on, but the extra CA bundles (from the config)."""
    root = Path(root)
    # = config.layer_files (tests/unit/test_buildstamp.py keeps them equal)
    layers = [root / "environments" / "base.yml", root / "environments" / env / "env.yml", root / "nodes" / f"{env}.yml"]
    paths = [*layers, *CODE, root / "tasks" / "images.py", root / "nodes"]
    for tree in (root / "images", root / "nodes" / "image"):
        paths.append(tree)
        if tree.is_dir():
            paths += sorted(tree.rglob("*"))
    return paths


@dataclass
class Inputs:
    """The stats of a build's inputs, taken before any of them is read."""

    root: str
    env: str
    taken_ns: int
    stats: dict[str, list[int] | None]
    extra_ca: list[tuple[str, str]]

    @classmethod
    def take(cls, root: Path, env: str) -> "Inputs":
        root = Path(root).resolve()
        taken = time.time_ns()
        return cls(str(root), env, taken, {str(p): stat_of(p) for p in input_paths(root, env)}, [])

    def add_extra_ca(self, name: str, path: Path) -> None:
        """Call before reading the bundle: ``name`` as configured, ``path`` as expanded."""
        if (name, str(path)) not in self.extra_ca:
            self.extra_ca.append((name, str(path)))
        self.stats.setdefault(str(path), stat_of(path))  # the first stat: taken before the first read

    def racy(self) -> bool:
        return any(st is not None and st[1] >= self.taken_ns - RACY_NS for st in self.stats.values())


def full_tag(tag: str) -> str | None:
    """The tag as the engine lists it in RepoTags (infra/dns -> infra/dns:latest); None for a digest."""
    if "@" in tag:
        return None
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"


def _by_tag(listing: list[dict]) -> dict[str, dict]:
    return {t: img for img in listing for t in (img.get("RepoTags") or [])}


def _label(img: dict) -> str | None:
    return (img.get("Labels") or {}).get(HASH_LABEL)


# ---- writing (the full path) ------------------------------------------------------

def invalidate(root: Path, env: str) -> None:
    stamp_path(root, env).unlink(missing_ok=True)
    forget()


def write(inputs: Inputs, base_tag: str, base_id: str, images: list[tuple[str, str]], listing: list[dict]) -> bool:
    """Write the stamp when ``listing`` (the engine's image list) shows exactly what was
    built: the base image with the id the hashes were computed from, every image with
    its hash. Return whether it was written."""
    path = stamp_path(Path(inputs.root), inputs.env)
    by_tag = _by_tag(listing)
    tags = [full_tag(t) for t in (base_tag, *(tag for tag, _ in images))]
    if inputs.racy() or None in tags or not base_id or by_tag.get(tags[0], {}).get("Id") != base_id:
        return False
    recorded = []
    for (tag, h), full in zip(images, tags[1:]):
        img = by_tag.get(full)
        if img is None or _label(img) != h:
            return False
        recorded.append({"tag": tag, "hash": h, "id": img["Id"]})
    data = {"version": VERSION, "root": inputs.root, "env": inputs.env, "taken_ns": inputs.taken_ns,
            "inputs": inputs.stats, "extra_ca": inputs.extra_ca,
            "base": {"tag": base_tag, "id": base_id}, "images": recorded}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    forget()
    return True


def record(project, builder, results) -> bool:
    """After a full build of all images: write the stamp (one image list from the engine).
    The stamp only saves time: failing to write it never fails the build."""
    base_tag = project.env.base_image.tag
    images = [(r.tag, r.hash) for r in results]
    refs = [t for t in (full_tag(base_tag), *(full_tag(tag) for tag, _ in images)) if t]
    try:
        listing = project.docker.api.images(filters={"reference": refs})
        return write(project.inputs, base_tag, builder.base_image_id, images, listing)
    except Exception:  # noqa: BLE001 - no stamp: the next build takes the full path
        invalidate(Path(project.inputs.root), project.inputs.env)
        return False


# ---- checking (the fast path) -----------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    base_tag: str
    base_present: bool      # the base image's tag exists
    up_to_date: bool        # every input unchanged and every image as recorded
    tags: tuple[str, ...]   # the images, in build order


_verdicts: dict[tuple[str, str], Verdict | None] = {}


def forget() -> None:
    """Drop the verdicts of this process (after anything that may have changed images)."""
    _verdicts.clear()


def check(root: Path, env: str | None) -> Verdict | None:
    """The fast path's verdict, or None: take the full path. One engine request per
    process and environment: `images.base` and `build` of one command line share it."""
    key = (str(root), resolve_env(env))
    if key not in _verdicts:
        try:
            _verdicts[key] = _check(Path(root), key[1])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            _verdicts[key] = None
    return _verdicts[key]


def _check(root: Path, env: str) -> Verdict | None:
    if not re.fullmatch(NAME, env):
        return None
    sock = docker_socket()
    try:
        data = json.loads(stamp_path(root, env).read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != VERSION or data.get("root") != str(root.resolve()) or data.get("env") != env:
        return None
    if sock is None or any(os.path.expanduser(name) != path for name, path in data["extra_ca"]):
        return None
    if any(stat_of(path) != st for path, st in data["inputs"].items()):
        return None
    base, images = data["base"], data["images"]
    refs = [full_tag(base["tag"]), *(full_tag(i["tag"]) for i in images)]
    by_tag = _by_tag(engine_get(sock, "/images/json?filters=" + quote(json.dumps({"reference": refs}))))
    base_img = by_tag.get(refs[0])
    ok = base_img is not None and base_img["Id"] == base["id"]
    for image, ref in zip(images, refs[1:]):
        img = by_tag.get(ref)
        ok = ok and img is not None and img["Id"] == image["id"] and _label(img) == image["hash"]
    return Verdict(base["tag"], base_img is not None, ok, tuple(i["tag"] for i in images))


def docker_socket() -> str | None:
    """The engine's unix socket as the docker SDK picks it (DOCKER_HOST), or None."""
    host = os.environ.get("DOCKER_HOST") or ""
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://") and host[len("unix://"):].startswith("/"):
        return host[len("unix://"):]
    return None


def engine_get(sock_path: str, path: str, timeout: float = 10.0):
    """GET one Docker API path over a unix socket; the JSON body. HTTP/1.0: the engine
    closes the connection after the body, so no chunked encoding to undo."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or status[1] != b"200":
        raise OSError(f"Docker engine answered {head[:80]!r} to GET {path}")
    return json.loads(body)
