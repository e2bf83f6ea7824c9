"""The one executor: applies a list of actions (lapinfra/actions.py) on the master and
records each action it applied, in order (a deploy's releases.jsonl entry carries them).

It decides nothing: what to do was decided from the facts (lapinfra/decisions.py). The swarm's
actions are applied by lapinfra/swarm.py, which reaches the workers, and recorded here (``record``). The only
exception is the registry's own answer: a tag in the registry that the registry refuses (its
manifest of another kind, a blob gone) is pushed instead, and recorded as the push it was.
"""
from __future__ import annotations

import time
from pathlib import PurePosixPath

from . import gitpush
from .actions import (ChangeContainer, JoinNetwork, LoadImage, PullImage, PushGit, PushImage, RemoveFile, TagImage, WriteFile,
                      WriteRelease)
from .base import split_tag
from .errors import LapinfraError
from .records import write_release
from .registry import copy_in_registry, mount_layers, push
from .session import write_file

# Images pushed (and pulled) at once: the engine sends only the layers the registry lacks, and
# compresses them on the CPU; four at once on 2 cores took longer than one after another (70 s vs 58 s).
PUSH_JOBS = 2
# Tags in the registry at once: each is a few small requests through the tunnel (the manifest,
# a mount per layer), which wait on the network (12 one after another took 6 s).
TAG_JOBS = 6


class Executor:
    """Applies actions through ``s`` (a MasterSession: its SSH connection, registry tunnel and
    engine; ``client``: only the engine, for containers alone); ``applied``: what it did;
    ``found``: the facts a phase decided on, by its name, where a record names them (the git
    push's, for the release entry's ``git``)."""

    def __init__(self, reporter, s=None, client=None):
        self.s, self.reporter = s, reporter
        self.client = client if client is not None else getattr(s, "docker", None)
        self.applied: list = []
        self.found: dict = {}

    def apply(self, actions) -> list:
        """Apply ``actions`` in order, but the images together: every tag in the registry where
        the first one is (several at once), then the pushes and then the pulls, last (several
        at once each); the ones applied."""
        first = len(self.applied)
        pushes = [action for action in actions if isinstance(action, PushImage)]
        pulls = [action for action in actions if isinstance(action, PullImage)]
        tags = [action for action in actions if isinstance(action, TagImage)]
        for action in actions:
            if action is next(iter(tags), None):
                pushes += self._tag(tags)
            elif not isinstance(action, (PushImage, PullImage, TagImage)):
                getattr(self, "_" + type(action).__name__)(action)
                self.applied.append(action)
        self._push(pushes)
        self._pull(pulls)
        return self.applied[first:]

    def record(self, actions) -> list:
        """Record ``actions`` that a module of their own applied (the swarm's, which reaches each
        worker's engine), in order with the rest; the ones recorded."""
        self.applied.extend(actions)
        return list(actions)

    # ---- files ----------------------------------------------------------------------
    def _WriteFile(self, action: WriteFile) -> None:
        path = f"{action.folder}/{action.path}"
        self.s.run(f"mkdir -p {PurePosixPath(path).parent}")
        write_file(self.s.conn.sftp(), path, action.data, action.mode)

    def _RemoveFile(self, action: RemoveFile) -> None:
        self.s.conn.sftp().remove(f"{action.folder}/{action.path}")

    # ---- images ---------------------------------------------------------------------
    def _LoadImage(self, action: LoadImage) -> None:
        with self.reporter.step(action.describe()):
            # saved under this tag: an image's first tag may be another one (a pulled base image)
            archive = action.image.save(named=":".join(split_tag(action.tag)))
            # the engine reports each image as it loads it: reading that stream to its end is what waits for the load
            for chunk in self.client.api.load_image(archive):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise LapinfraError(f"docker load of {action.tag} on the node failed: {chunk['error']}")

    def _tag(self, tags: list[TagImage]) -> list[PushImage]:
        """Name images the registry holds under another release's name, TAG_JOBS at a time; the
        pushes of those it refused (recorded as pushes when they are done)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=TAG_JOBS) as pool:
            copied = list(pool.map(lambda action: copy_in_registry(self.s, action.source, action.repository), tags))
        pushes = []
        for action, done in zip(tags, copied):
            if done:
                self.reporter.info(f"{action.repository}: same image as {action.source}, tagged in the registry (nothing uploaded)")
                self.applied.append(action)
            else:
                pushes.append(PushImage(action.name, action.repository, action.id, action.image, action.source))
        return pushes

    def _push(self, pushes: list[PushImage]) -> None:
        """The images of the workstation's engine into the node's registry, PUSH_JOBS at a time."""
        from concurrent.futures import ThreadPoolExecutor, as_completed

        if not pushes:
            return
        jobs = min(PUSH_JOBS, len(pushes))
        failed = []
        with self.reporter.step(f"push {len(pushes)} image{'s' * (len(pushes) > 1)} into the node's registry ({jobs} at a time)"):
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                started = {pool.submit(push_one, self.s, a.image, a.repository, "latest", a.layers_from): a.repository
                           for a in pushes}
                for future in as_completed(started):
                    try:
                        seconds, (sent, layers) = future.result()
                        self.reporter.info(f"pushed {started[future]}:latest ({seconds:.1f}s, {sent} of {layers} layers sent)")
                    except LapinfraError as exc:
                        failed.append(str(exc))
        if failed:
            raise LapinfraError("; ".join(failed))
        self.applied.extend(pushes)

    def _pull(self, pulls: list[PullImage]) -> None:
        """The master's engine pulls from the node's registry, PUSH_JOBS at a time."""
        from concurrent.futures import ThreadPoolExecutor

        if not pulls:
            return
        with self.reporter.step(f"pull {len(pulls)} image{'s' * (len(pulls) > 1)} from the node's registry"):
            with ThreadPoolExecutor(max_workers=min(PUSH_JOBS, len(pulls))) as pool:
                for future in [pool.submit(pull_one, self.s, action.reference) for action in pulls]:
                    future.result()
        self.applied.extend(pulls)

    # ---- the release record ---------------------------------------------------------
    def _WriteRelease(self, action: WriteRelease) -> None:
        write_release(self.s, action.record)

    def _JoinNetwork(self, action: JoinNetwork) -> None:
        self.client.networks.get(action.network).connect(action.container)
        self.reporter.info(f"{action.container}: joined {action.network}")

    # ---- the target's infrastructure repository ----------------------------------------
    def _PushGit(self, action: PushGit) -> None:
        with self.reporter.step(action.describe()):
            gitpush.push(self.s, self.s.p, action)

    # ---- containers -----------------------------------------------------------------
    def _ChangeContainer(self, action: ChangeContainer) -> None:
        import docker.errors

        if action.verb == "start":
            self.client.containers.get(action.container).start()
            self.reporter.info(f"{action.container}: started")
            return
        with self.reporter.step(f"{action.container}: {action.done}"):
            if action.verb == "recreate":
                try:
                    self.client.containers.get(action.container).remove(force=True)
                except docker.errors.NotFound:       # gone since the facts were read: created anew
                    pass
            self.client.containers.run(**action.kwargs)


def push_one(s, image, repository: str, tag: str, layers_from: str = "") -> tuple[float, tuple[int, int]]:
    """One push with a client of its own to the workstation's engine (as Project.docker reaches it;
    the SDK's clients are not shared between threads), after mounting the layers of ``layers_from``
    (registry.mount_layers); its seconds and (layers sent, in all)."""
    import docker

    started = time.monotonic()
    if layers_from:
        mount_layers(s, layers_from, repository)
    client = docker.from_env(timeout=600)
    try:
        layers = push(s, client, image, repository, tag)
    finally:
        client.close()
    return time.monotonic() - started, layers


def pull_one(s, reference: str) -> None:
    """One pull by the master's engine, with a client of its own (the SDK's clients are not shared
    between threads), as the registry's pull account."""
    import docker

    client = docker.DockerClient(base_url=s.api_url, timeout=600)
    try:
        repo, tag = reference.rsplit(":", 1)
        client.images.pull(repo, tag=tag, auth_config=s.pull_auth())
    finally:
        client.close()
