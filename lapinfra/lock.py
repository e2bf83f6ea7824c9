"""One writer at a time per environment: a lock file on its master.

Every command that changes an environment (deploy, rollback, start, stop,
restore, snapshot.fetch, dr.recover, app.deploy, app.remove, node.seed) takes
the lock of that environment. It is ``/var/lib/lapinfra/deploy.lock`` on the
master, outside ``/data`` (no restore brings a lock back), created with O_EXCL
(``set -C``), its mtime touched by a heartbeat thread.

The holder is identified by machine id (``/etc/machine-id``), boot id and pid;
user@host and the command are there for humans. A lock is stale only when

- its machine id is ours and its boot id is not (our machine rebooted since), or
- machine and boot id are ours and its process is gone, or
- its heartbeat is older than STALE_SECONDS, whoever holds it

so two CI runners with the same host name never take each other's locks for
stale. A stale lock is not taken over: ``invoke unlock`` shows it, checks it
again and removes exactly that lock (compare-and-delete).

The lock is re-entrant within one process: a task that holds it may call
``deploy.deploy``, which takes it again (a depth count, no second file).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import LapinfraError
from .nodes import Nodes

LOCK = "/var/lib/lapinfra/deploy.lock"      # outside /data: a restore never brings a lock back
HEARTBEAT_SECONDS = 10
STALE_SECONDS = 60
POLL_SECONDS = 2.0
COMMAND_SECONDS = 30         # each command on the lock file: a master that stops answering is an error, not a hang
MAX_WAIT_SECONDS = 24 * 3600  # the longest --lock-wait
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


# ---- who holds it ---------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    machine_id: str
    boot_id: str
    pid: int
    by: str = ""          # user@host, for humans
    host: str = ""


def _read_first(paths) -> str:
    for path in paths:
        with contextlib.suppress(OSError):
            text = Path(path).read_text().strip()
            if text:
                return text
    return ""


def local_identity() -> Identity:
    import getpass

    host = socket.gethostname()
    return Identity(_read_first(MACHINE_ID_FILES), _read_first([BOOT_ID_FILE]), os.getpid(),
                    f"{getpass.getuser()}@{host}", host)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(holder: dict, me: Identity, age: int, is_alive: Callable[[int], bool] = alive,
                 bound: int = STALE_SECONDS) -> str:
    """Why ``holder`` (the lock file's content) is stale, seen from ``me``; "" when it is held.

    ``age`` is the seconds since its heartbeat, measured on the master's clock."""
    host = holder.get("host") or "its machine"
    ours = bool(me.machine_id) and holder.get("machine_id") == me.machine_id
    if ours and holder.get("boot_id") != me.boot_id:
        return f"{host} was rebooted since it took the lock"
    pid = int(holder.get("pid") or 0)
    if ours and pid and not is_alive(pid):
        return f"its process {pid} on {host} is gone"
    if age > bound:
        return f"no heartbeat for {age}s"
    return ""


def describe(holder: dict) -> str:
    """The holder for humans: "deploy by alice@ws (pid 42 on machine 3d1219c7c4c5) since ..."."""
    machine = (holder.get("machine_id") or "unknown")[:12]
    text = (f"{holder.get('purpose', 'deploy')} by {holder.get('by', 'unknown')} "
            f"(pid {holder.get('pid', '?')} on machine {machine}) since {holder.get('since', 'unknown')}")
    return text + (f": `{holder['command']}`" if holder.get("command") else "")


def bounded_wait(wait) -> float:
    """--lock-wait as seconds: 0 (refuse at once) up to MAX_WAIT_SECONDS; anything else is refused."""
    import math

    try:
        seconds = float(wait or 0)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 <= seconds <= MAX_WAIT_SECONDS:      # also NaN and infinity
        raise LapinfraError(f"--lock-wait {wait}: give the seconds to wait for the lock, 0 to {MAX_WAIT_SECONDS}")
    return seconds


def waited_for(first: dict | None, holder: dict, seconds: float, wait: float) -> str:
    """What a lock that gave up waited for: how long, and for whom (the holders, when it changed hands)."""
    if not wait or first is None or first.get("raw") == holder.get("raw"):
        return ""
    return f"It waited {seconds:.0f}s, first for {describe(first)}, which handed the lock on. "


# ---- the file on the master ---------------------------------------------------------

class RemoteLockFile:
    """The lock file through a Fabric-like connection (``run(cmd, hide=, warn=)``)."""

    def __init__(self, conn, path: str = LOCK):
        self.conn, self.path = conn, path
        self.error = ""      # why the last create failed, when no lock was in the way

    def _run(self, command: str):
        from invoke.exceptions import CommandTimedOut

        try:
            return self.conn.run(command, hide=True, warn=True, timeout=COMMAND_SECONDS)
        except CommandTimedOut:
            raise LapinfraError(f"the master did not answer within {COMMAND_SECONDS}s about its lock file "
                                f"{self.path} (is it overloaded or unreachable?)") from None

    def create(self, content: str) -> bool:
        """Write ``content`` only if no lock exists (O_EXCL); True when it is now ours."""
        p = shlex.quote(self.path)
        r = self._run(f"mkdir -p {shlex.quote(str(Path(self.path).parent))} && (set -C; printf '%s' {shlex.quote(content)} > {p})")
        self.error = "" if not r.failed else (getattr(r, "stderr", "") or "").strip()
        return not r.failed

    def read(self) -> tuple[str, int] | None:
        """(content, seconds since the last heartbeat), or None when there is no lock."""
        p = shlex.quote(self.path)
        r = self._run(f"cat {p} && echo && echo $(( $(date +%s) - $(stat -c %Y {p}) ))")
        if r.failed:
            return None
        *body, age = r.stdout.rstrip("\n").split("\n")
        return "\n".join(body), int(age)

    def _if_same(self, content: str, action: str) -> bool:
        p = shlex.quote(self.path)
        return not self._run(f'[ "$(cat {p} 2>/dev/null)" = {shlex.quote(content)} ] && {action} {p}').failed

    def touch_if(self, content: str) -> bool:
        """Heartbeat: touch the lock only while it is still ``content``."""
        return self._if_same(content, "touch -c")

    def remove_if(self, content: str) -> bool:
        """Compare-and-delete: remove the lock only while it is still ``content``."""
        return self._if_same(content, "rm -f")


def parse(content: str, age: int, me: Identity, is_alive: Callable[[int], bool] = alive) -> dict:
    try:
        holder = json.loads(content)
        if not isinstance(holder, dict):
            raise ValueError
    except ValueError:
        holder = {"by": "unknown", "since": "unknown", "pid": 0}
    holder.update(age=age, raw=content, stale=stale_reason(holder, me, age, is_alive))
    return holder


# ---- taking it ----------------------------------------------------------------------

_HELD: dict[str, "EnvLock"] = {}   # environment -> the outermost lock this process holds


class EnvLock:
    """The environment's lock, as a context manager; re-entrant within the process."""

    def __init__(self, store, env: str, reporter, purpose: str = "deploy", wait: float = 0,
                 me: Identity | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, heartbeat: float = HEARTBEAT_SECONDS):
        self.store, self.env, self.reporter, self.purpose = store, env, reporter, purpose
        self.wait, self.clock, self.sleep, self.heartbeat = bounded_wait(wait), clock, sleep, heartbeat
        self.me = me or local_identity()
        self.info = {"purpose": purpose, "by": self.me.by, "host": self.me.host, "pid": self.me.pid,
                     "machine_id": self.me.machine_id, "boot_id": self.me.boot_id,
                     "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "command": " ".join(["invoke", *sys.argv[1:]])[:200], "token": secrets.token_hex(8)}
        self.content = json.dumps(self.info)
        self.depth = 0
        self._process = os.getpid()       # re-entrancy is per process (a fork holds nothing)
        self._outer: EnvLock | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_failing = False

    # -- state
    def holder(self) -> dict | None:
        """The current holder with ``age``, ``raw`` and ``stale`` (why, or ""), or None."""
        found = self.store.read()
        return None if found is None else parse(*found, self.me)

    def held_here(self) -> bool:
        held = _HELD.get(self.env)
        return held is not None and held._process == os.getpid()

    # -- enter / exit
    def __enter__(self):
        if self.held_here():
            self._outer = _HELD[self.env]
            self._outer.depth += 1
            return self
        self._acquire()
        self.depth = 1
        _HELD[self.env] = self
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.env}", daemon=True)
        self._thread.start()
        return self

    def _acquire(self) -> None:
        began = self.clock()
        deadline = began + self.wait
        vanished, said_waiting, first = 0, False, None
        while True:
            if self.store.create(self.content):
                return
            holder = self.holder()
            if holder is None:            # released between the two calls: try again at once
                vanished += 1
                if vanished > 3:          # no lock in the way, yet none can be made
                    raise LapinfraError(f"cannot create the lock file {getattr(self.store, 'path', LOCK)} on "
                                        f"{self.env}'s master: {getattr(self.store, 'error', '') or 'unknown error'}")
                continue
            if holder["stale"]:
                raise LapinfraError(
                    f"{self.env} is locked by a stale {describe(holder)}: {holder['stale']}. "
                    f"Check that no such command runs, then break it with `invoke unlock --env={self.env}`")
            first = first or holder
            left = deadline - self.clock()
            if left <= 0:
                waited = f" (waited {self.wait:g}s)" if self.wait else ""
                raise LapinfraError(
                    f"{self.env} is being changed by another {describe(holder)} (heartbeat {holder['age']}s ago): "
                    f"{self.env} is locked by it{waited}. " + waited_for(first, holder, self.clock() - began, self.wait)
                    + "Wait for it to finish, or give --lock-wait SECONDS to wait" + (" longer" if self.wait else ""))
            if self.wait and not said_waiting:
                said_waiting = True
                self.reporter.info(f"{self.env} is locked by {describe(holder)}: waiting up to {self.wait:g}s")
            self.sleep(min(POLL_SECONDS, left))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self.beat_once()

    def beat_once(self) -> bool:
        """Touch the lock; warn once when that fails, and once when it works again."""
        try:
            ok, problem = self.store.touch_if(self.content), "the lock file is no longer ours (broken by `invoke unlock`?)"
        except Exception as exc:   # noqa: BLE001 - reported, and the command goes on
            ok, problem = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not ok and not self._beat_failing:
            self.reporter.warn(f"the heartbeat of {self.env}'s lock failed ({problem}); after {STALE_SECONDS}s "
                               f"without one, another command may take the lock for stale")
        elif ok and self._beat_failing:
            self.reporter.info(f"the heartbeat of {self.env}'s lock works again")
        self._beat_failing = not ok
        return ok

    def __exit__(self, *exc):
        if self._outer is not None:
            self._outer.depth -= 1
            self._outer = None
            return
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if _HELD.get(self.env) is self:
            del _HELD[self.env]
        try:
            if not self.store.remove_if(self.content):
                self.reporter.warn(f"{self.env}'s lock was no longer ours when we released it (broken by `invoke unlock`?)")
        except Exception as exc:   # noqa: BLE001 - the command's own outcome matters more
            self.reporter.warn(f"could not release {self.env}'s lock ({str(exc).splitlines()[0] if str(exc) else exc}): "
                               f"it goes stale within {STALE_SECONDS}s, or `invoke unlock --env={self.env}`")


# ---- breaking it ----------------------------------------------------------------

def break_lock(store, env: str, reporter, force: bool = False, me: Identity | None = None) -> dict | None:
    """Show the holder, re-check it, and remove exactly that lock (compare-and-delete).

    Only a stale lock is broken unless ``force``. Returns the holder removed, or None."""
    me = me or local_identity()
    found = store.read()
    if found is None:
        reporter.info(f"{env} is not locked")
        return None
    holder = parse(*found, me)
    reporter.info(f"{env} is locked by {describe(holder)}, heartbeat {holder['age']}s ago: "
                  f"{'stale, ' + holder['stale'] if holder['stale'] else 'its holder looks alive'}")
    if not holder["stale"] and not force:
        raise LapinfraError(f"{env} is held by a live {describe(holder)} (heartbeat {holder['age']}s ago); "
                            f"not breaking it (--force breaks it anyway)")
    again = store.read()
    if again is None:
        reporter.info(f"{env}'s lock was released meanwhile: nothing to break")
        return None
    if again[0] != holder["raw"] or not store.remove_if(holder["raw"]):
        raise LapinfraError(f"{env}'s lock changed hands while it was checked; nothing broken: "
                            f"run `invoke unlock --env={env}` again to see the new holder")
    return holder


@contextlib.contextmanager
def env_lock(project, purpose: str, wait: float = 0):
    """The environment's lock for a task: its own SSH connection to the master (the
    heartbeat's), opened only when this process does not hold the lock already."""
    held = _HELD.get(project.name)
    if held is not None and held._process == os.getpid():
        with EnvLock(None, project.name, project.reporter, purpose):
            yield
        return
    with Nodes(project).connect() as conn:
        with EnvLock(RemoteLockFile(conn), project.name, project.reporter, purpose, wait):
            yield
