"""Make-style image builds: a graph from the Dockerfiles' FROM lines, content hashes.

Each image's hash covers its build context (every file, by path and content),
the build-time inputs handed to it (the extra CA bundle) and its parent's hash
(for the base image: its image id). The hash is stored as the label
``lapinfra.hash``; an image whose stored hash equals the computed one is not
built again: no docker build call at all.
"""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError, LapinfraError

HASH_LABEL = "lapinfra.hash"
EXTRA_CA_FILE = "extra-ca-certs.pem"


@dataclass(frozen=True)
class ImageSpec:
    name: str                 # "dns"
    dir: Path                 # images/dns
    tag: str                  # "infra/dns"
    parents: tuple[str, ...]  # image references from FROM lines
    pushed: bool = True       # infrastructure images go to the registry; the node image does not


@dataclass
class ImageGraph:
    specs: dict[str, ImageSpec]
    base_tag: str
    extra_ca: bytes = b""
    _hashes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def discover(cls, root: Path, base_tag: str, extra_ca: bytes = b"", node_image: str = "lapinfra/node") -> "ImageGraph":
        specs = {}
        for dockerfile in sorted(Path(root, "images").glob("*/Dockerfile")):
            name = dockerfile.parent.name
            specs[name] = ImageSpec(name, dockerfile.parent, f"infra/{name}", parse_from(dockerfile.read_text()))
        node_dir = Path(root, "nodes", "image")
        if (node_dir / "Dockerfile").exists():
            specs["node"] = ImageSpec("node", node_dir, node_image, parse_from((node_dir / "Dockerfile").read_text()), pushed=False)
        graph = cls(specs, base_tag, extra_ca)
        graph.order()  # rejects cycles and unknown infra/ parents early
        return graph

    def _tags(self) -> dict[str, str]:
        return {spec.tag: name for name, spec in self.specs.items()}

    def parents_of(self, name: str) -> list[str]:
        tags = self._tags()
        out = []
        for ref in self.specs[name].parents:
            ref = _untagged(ref)
            if ref in tags:
                out.append(tags[ref])
            elif ref.startswith("infra/") and ref != self.base_tag:
                raise LapinfraError(f"{self.specs[name].dir}/Dockerfile: FROM {ref}: no such image folder images/{ref[6:]}/")
        return out

    def order(self) -> list[list[str]]:
        """Names in build order, as levels: images within a level are independent."""
        remaining = {name: set(self.parents_of(name)) for name in self.specs}
        levels = []
        while remaining:
            ready = sorted(n for n, deps in remaining.items() if not deps)
            if not ready:
                raise LapinfraError(f"images: FROM lines form a cycle among {', '.join(sorted(remaining))}")
            levels.append(ready)
            for n in ready:
                del remaining[n]
            for deps in remaining.values():
                deps.difference_update(ready)
        return levels

    # ---- hashing --------------------------------------------------------------
    def context_tar(self, name: str) -> bytes:
        """The build context as a deterministic tar: the folder plus the extra CA bundle."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            directory = self.specs[name].dir
            # templates/ is rendered per environment into the env volume, not built into the image
            files = [p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).parts[0] != "templates"]
            for path in sorted(files):
                _add(tar, str(path.relative_to(directory)), path.read_bytes(), path.stat().st_mode & 0o777)
            _add(tar, EXTRA_CA_FILE, self.extra_ca, 0o644)
        return buf.getvalue()

    def hash(self, name: str, base_id: str) -> str:
        if name not in self._hashes:
            h = hashlib.sha256(self.context_tar(name))
            for ref in self.specs[name].parents:
                h.update(f"\0FROM {ref}\0".encode())
            for parent in self.parents_of(name):
                h.update(self.hash(parent, base_id).encode())
            if any(_untagged(ref) == _untagged(self.base_tag) for ref in self.specs[name].parents):
                h.update(base_id.encode())
            self._hashes[name] = h.hexdigest()
        return self._hashes[name]


def parse_from(dockerfile: str) -> tuple[str, ...]:
    stages = set()
    parents = []
    for match in re.finditer(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.IGNORECASE | re.MULTILINE):
        ref, alias = match.group(1), match.group(2)
        if ref not in stages:
            parents.append(ref)
        if alias:
            stages.add(alias)
    return tuple(parents)


def _untagged(ref: str) -> str:
    """infra/base:latest -> infra/base (a registry port stays: localhost:5000/x)."""
    return ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


# ---- building -------------------------------------------------------------------

@dataclass
class BuildResult:
    name: str
    tag: str
    hash: str
    built: bool
    image_id: str = ""


class Builder:
    """Builds the stale images of a graph through the docker SDK."""

    def __init__(self, client, graph: ImageGraph, reporter, jobs: int = 2):
        self.client, self.graph, self.reporter, self.jobs = client, graph, reporter, jobs
        self.base_image_id = ""  # the base image id the last plan's hashes were computed from

    def base_id(self) -> str:
        import docker.errors

        try:
            return self.client.images.get(self.graph.base_tag).id
        except docker.errors.ImageNotFound:
            raise LapinfraError(f"base image {self.graph.base_tag} is missing: run `invoke images.base`") from None

    def current_hash(self, tag: str) -> str | None:
        import docker.errors

        try:
            return (self.client.images.get(tag).labels or {}).get(HASH_LABEL)
        except docker.errors.ImageNotFound:
            return None

    def plan(self, names: list[str] | None = None, force: bool = False) -> list[tuple[str, str, bool]]:
        """(name, hash, stale) for each image in build order; pure apart from reading labels."""
        base = self.base_image_id = self.base_id()
        wanted = set(names or self.graph.specs)
        out = []
        for level in self.graph.order():
            for name in level:
                if name in wanted:
                    h = self.graph.hash(name, base)
                    out.append((name, h, force or self.current_hash(self.graph.specs[name].tag) != h))
        return out

    def build(self, names: list[str] | None = None, force: bool = False) -> list[BuildResult]:
        plan = {name: (h, stale) for name, h, stale in self.plan(names, force)}
        results = []
        for level in self.graph.order():
            todo = [n for n in level if n in plan]
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                results += list(pool.map(lambda n: self._one(n, *plan[n]), todo))
        return results

    def _one(self, name: str, h: str, stale: bool) -> BuildResult:
        spec = self.graph.specs[name]
        if not stale:
            self.reporter.info(f"{spec.tag}: up to date")
            return BuildResult(name, spec.tag, h, False)
        with self.reporter.step(f"build {spec.tag}"):
            image_id = self._docker_build(spec, h)
        return BuildResult(name, spec.tag, h, True, image_id)

    def _docker_build(self, spec: ImageSpec, h: str) -> str:
        log: list[str] = []
        stream = self.client.api.build(
            fileobj=io.BytesIO(self.graph.context_tar(spec.name)), custom_context=True, tag=spec.tag,
            labels={HASH_LABEL: h}, rm=True, forcerm=True, decode=True,
        )
        image_id = ""
        for chunk in stream:
            if "stream" in chunk:
                log.extend(chunk["stream"].splitlines())
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                log.append(chunk["error"].strip())
                tail = "\n".join(f"    {line}" for line in log[-25:])
                raise BuildError(f"image {spec.tag} ({spec.dir}/Dockerfile) failed to build:\n{tail}")
        return image_id


def built_image(client, tag: str):
    """The image ``tag`` of the workstation's engine (``client``), built by `invoke build`."""
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        raise LapinfraError(f"image {tag} is missing: run `invoke build`") from None
