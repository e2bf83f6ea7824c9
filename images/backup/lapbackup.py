#!/usr/bin/python3
"""lapbackup: restic snapshots of the master's /data on the backup node (sftp).

The master writes the backup node's inbox (BACKUP_REPOSITORY, sftp as the chrooted
sftp-only user `backup`) and can only read its vault (BACKUP_VAULT, default: `vault`
beside the inbox), which the backup node's own loop (nodes/image/lapvault) fills with
`restic copy` after each snapshot and prunes with the environment's retention: no key
or password on the master can delete or alter a snapshot in the vault. list, restore and
digest read both (the vault without locks: it is read-only here), showing each vault
copy by its inbox id (restic's "original"), so an id means the same snapshot wherever it is.

Commands (machine-readable output: one JSON document on stdout, logs on stderr):
  scheduler                          default: a snapshot every BACKUP_INTERVAL s (retention:
                                     on the backup node)
  snapshot [--label L] [--tag K=V]   back up /srv/data; a container that writes a database or a
           [--pause-all]             journal (BACKUP_FREEZE) is paused only while its own files are
                                     copied, milliseconds (--pause-all: every infra_* container for
                                     the whole backup, the old way, kept for the benchmark)
  list                               snapshots with id, time, label, tags, size
  restore ID|latest [--keep PATH]    make /srv/data exactly the snapshot (excluded and --keep paths kept),
                                     through a journal: an interrupted restore is finished or undone
  recover                            finish or undo an interrupted restore, unpause what a killed run
                                     left paused; JSON of what it did (every command does this first)
  check                              restic check
  status                             the scheduler's last status.json
  health                             exit 0 unless the scheduler's last run failed or an infra_*
                                     container is left paused longer than BACKUP_MAX_PAUSE_S (HEALTHCHECK)
  drill-status                       the backup node's last restore drill (its drill.json, read over
                                     sftp), copied to /srv/data/backup/drill.json; {"at": null} when
                                     none ran yet (the scheduler refreshes the copy after every run)

Mounts: node /data at /srv/data, the Docker socket, /run/secrets/{restic.password,
backup_ed25519,backup_known_hosts}. Env: BACKUP_REPOSITORY, BACKUP_VAULT, BACKUP_INTERVAL,
BACKUP_PAUSE_PREFIX (the containers a snapshot may pause), BACKUP_CONTAINER (the backup container,
never paused), BACKUP_ENV (tagged env=<name> on every snapshot),
BACKUP_MAX_PAUSE_S (default 60), BACKUP_RESTIC_TIMEOUT_S (overrides every restic call's limit),
BACKUP_FREEZE (JSON: container -> paths below /srv/data, globs allowed, it writes in place:
{"infra_trac": ["trac/env/db"], ...}; lapinfra derives it from each service's `freeze`).
lapinfra sets every one of them (lapinfra/services.py backup_service); the names below
/srv/data that lapbackup and lapinfra both know are tested equal (tests/unit/test_lapbackup.py).

Consistency without downtime: what is written atomically (registry blobs, git objects and
refs, Maven/artifact files: all by rename) is read live. The paths of BACKUP_FREEZE are
copied, each container paused for just its own copy, to /srv/data/.lapsnap/<same path>
(an index.json lists them); the snapshot holds those copies instead of the live files
(excluded), and every restore moves them back to their places before the swap.

/srv/data/secrets is in no snapshot (it holds the environment's keys and passwords, which
lapinfra uploads from the workstation's secrets folder on every deploy and recovery) and
no restore replaces it.
"""
import argparse
import collections
import concurrent.futures
import datetime
import fcntl
import fnmatch
import http.client
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

DATA = "/srv/data"
STATE = DATA + "/backup"                 # this container's own state (excluded)
STATUS = STATE + "/status.json"
PAUSED_FILE = STATE + "/paused.json"     # containers we paused; survives a SIGKILL
LOCK_FILE = STATE + "/lock"
CACHE = STATE + "/cache"
SIZES = STATE + "/sizes.json"            # restore size per snapshot id (restic stats is slow)
HISTORY = STATE + "/history.jsonl"       # one line per snapshot, for the status page (images/status)
HISTORY_LINES = 500
TMP = DATA + "/.restore-tmp"
JOURNAL = TMP + "/journal.json"          # the plan of a restore's swap; see run_swap
SECRETS = "/run/secrets"
PASSWORD = SECRETS + "/restic.password"
KEY = SECRETS + "/backup_ed25519"
KNOWN_HOSTS = SECRETS + "/backup_known_hosts"
KEY_COPY = "/run/lapbackup/backup_ed25519"
DOCKER_SOCK = "/var/run/docker.sock"
# Below DATA, named as lapinfra names them (lapinfra/records.py, lapinfra/services.py):
HOST_KEYS_REL = "lapinfra/ssh"           # the node's SSH host keys
STATE_REL = "backup"                     # this container's own /data (STATE)
SECRETS_REL = "secrets"                  # every service's secrets, uploaded from the workstation
RELEASE_REL = "lapinfra/release.json"    # the release record of the deploy that runs
# secrets: never in a snapshot, so a fetched one carries none of its environment's secrets
EXCLUDES = [f"{DATA}/{HOST_KEYS_REL}", f"{DATA}/{STATE_REL}", f"{DATA}/{SECRETS_REL}", "*.restore-tmp"]
KEEP_REL = (HOST_KEYS_REL, STATE_REL)    # relative to DATA; untouched by restore
ALWAYS_KEEP = (SECRETS_REL,)             # kept even when absent: an older snapshot's copy never comes in
# restic's time limits in seconds (lapinfra waits 3600 s for the whole tool run)
RESTIC_TIMEOUTS = {"backup": 1800, "restore": 3000, "forget": 1800, "check": 1800, "copy": 3000}
RESTIC_TIMEOUT = 600
MAX_PAUSE = 60                           # health: a pause longer than a snapshot takes is a fault
SEEN_PAUSED = STATE + "/paused-seen.json"   # health: when it first saw a container paused by others
KEEP_GLOB = "*.restore-tmp"
FREEZE_NAME = ".lapsnap"                 # below DATA: a snapshot's consistent copies (see copy_frozen)


class Fail(Exception):
    """An error reported to the caller as {"error": ...} with exit status 1."""


class Terminated(BaseException):
    """SIGTERM/SIGINT: unwinds through every finally (unpause, cleanup)."""


_terminating = False


def _on_signal(signum, _frame):
    global _terminating
    if _terminating:          # a second signal must not interrupt the cleanup
        return
    _terminating = True
    raise Terminated(signum)


def log(msg):
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sys.stderr.write(f"{ts} lapbackup: {msg}\n")
    sys.stderr.flush()


def now_iso(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- restic ---

def ssh_command():
    repo = os.environ.get("BACKUP_REPOSITORY", "")
    port = None
    if repo.startswith("sftp://"):
        u = urllib.parse.urlsplit(repo)
        user, host, port = u.username, u.hostname, u.port
    elif repo.startswith("sftp:"):
        userhost = repo[len("sftp:"):].split(":", 1)[0]
        user, _, host = userhost.rpartition("@")
    else:
        raise Fail(f"BACKUP_REPOSITORY must be an sftp: repository, got {repo!r}")
    if not host:
        raise Fail(f"no host in BACKUP_REPOSITORY {repo!r}")
    cmd = ["ssh", "-i", KEY_COPY, "-o", "IdentitiesOnly=yes",
           "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
           "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=30",
           "-o", "ServerAliveCountMax=4"]
    if port:
        cmd += ["-p", str(port)]
    cmd += [f"{user}@{host}" if user else host, "-s", "sftp"]
    return " ".join(shlex.quote(c) for c in cmd)


def prepare():
    """Checks the mounts/secrets and copies the key to a 0600 file ssh accepts."""
    if not os.environ.get("BACKUP_REPOSITORY"):
        raise Fail("BACKUP_REPOSITORY is not set")
    for path in (PASSWORD, KEY, KNOWN_HOSTS):
        if not os.path.isfile(path):
            raise Fail(f"secret {path} missing (secrets not mounted?)")
    if not os.path.isdir(DATA):
        raise Fail(f"{DATA} missing (node /data not mounted?)")
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(KEY_COPY), mode=0o700, exist_ok=True)
    with open(KEY, "rb") as src:
        key = src.read()
    fd = os.open(KEY_COPY + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as dst:
        dst.write(key)
    os.replace(KEY_COPY + ".tmp", KEY_COPY)


def _stop_child(proc):
    """restic removes its lock on SIGINT; SIGKILL only if it does not exit."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def restic_timeout(command):
    """How long one restic call may take: BACKUP_RESTIC_TIMEOUT_S, else its command's limit."""
    override = os.environ.get("BACKUP_RESTIC_TIMEOUT_S")
    if override:
        try:
            return max(1.0, float(override))
        except ValueError:
            raise Fail(f"BACKUP_RESTIC_TIMEOUT_S must be a number of seconds, got {override!r}")
    return RESTIC_TIMEOUTS.get(command, RESTIC_TIMEOUT)


def vault_repository():
    """The backup node's vault as the sftp user sees it: BACKUP_VAULT, else `vault` beside
    the inbox (sftp:backup@host:/restic -> sftp:backup@host:/vault)."""
    if os.environ.get("BACKUP_VAULT"):
        return os.environ["BACKUP_VAULT"]
    inbox = os.environ.get("BACKUP_REPOSITORY", "")
    head, _, _ = inbox.rstrip("/").rpartition("/")
    return head + "/vault" if head else ""


def restic(*args, quiet_errors=False, vault=False, lock=True):
    """Runs restic on the inbox (``vault``: on the vault, read-only: no lock); returns
    (rc, stdout, stderr tail). stderr is logged live. ``lock=False``: a read of the inbox
    that takes no lock either (listing, dump, stats: they neither wait for nor fail on a
    `restic check` holding the inbox's exclusive lock).
    A call that outlives restic_timeout is stopped (SIGINT, then SIGKILL) and is a Fail."""
    repo = vault_repository() if vault else os.environ["BACKUP_REPOSITORY"]
    cmd = (["restic", "--cache-dir", CACHE, "-o", "sftp.command=" + ssh_command()]
           + (["--no-lock"] if vault or not lock else []) + list(args))
    env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD_FILE=PASSWORD)
    env.pop("RESTIC_PASSWORD", None)
    env.pop("RESTIC_PASSWORD_COMMAND", None)
    log(("restic (vault) " if vault else "restic ") + " ".join(shlex.quote(a) for a in args))
    tail = collections.deque(maxlen=40)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, errors="replace")

    def pump():
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
            if not quiet_errors:
                sys.stderr.write("  restic: " + line)
                sys.stderr.flush()

    limit = restic_timeout(args[0] if args else "")
    expired = threading.Event()

    def expire():
        expired.set()
        log(f"restic {args[0]} still running after {limit:.0f}s; stopping it")
        _stop_child(proc)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    try:
        out = proc.stdout.read()
        proc.wait()
    except BaseException:
        _stop_child(proc)
        raise
    finally:
        timer.cancel()
    t.join(timeout=5)
    if expired.is_set():
        raise Fail(f"restic {args[0]} did not finish within {limit:.0f}s and was stopped "
                   f"(limit: BACKUP_RESTIC_TIMEOUT_S)")
    return proc.returncode, out, "\n".join(tail)


def _restic_error(what, err, vault=False):
    repo = vault_repository() if vault else os.environ["BACKUP_REPOSITORY"]
    if "wrong password" in err:
        return Fail(f"{what}: wrong repository password (restic.password does not open "
                    f"the repository {repo})")
    if "Host key verification failed" in err:
        return Fail(f"{what}: the backup node's ssh host key does not match "
                    f"backup_known_hosts")
    if "Permission denied" in err:
        return Fail(f"{what}: the backup node refused the ssh key")
    if "Is there a repository at the following location?" in err:
        return Fail(f"{what}: no repository at {repo} (no snapshot taken yet?)")
    last = [l for l in err.splitlines() if l.strip()][-5:]
    return Fail(f"{what} failed: " + " | ".join(last))


def ensure_repo(create=True):
    """Opens the repository (init only when it does not exist) and drops stale locks."""
    rc, _, err = restic("cat", "config", quiet_errors=True)
    if rc == 0:
        restic("unlock")          # removes stale locks only (killed runs)
        return
    missing = "Is there a repository at the following location?" in err
    if not (missing and create):
        if missing:
            raise Fail(f"no repository at {os.environ['BACKUP_REPOSITORY']}")
        raise _restic_error("opening the repository", err)
    log("no repository yet; restic init")
    rc, _, err = restic("init")
    if rc != 0:
        raise _restic_error("restic init", err)
    log("repository initialised")


def snapshots_raw(vault=False):
    rc, out, err = restic("snapshots", "--json", vault=vault, quiet_errors=vault, lock=False)
    if rc != 0:
        raise _restic_error("restic snapshots" + (" of the vault" if vault else ""), err, vault)
    return json.loads(out or "[]") or []


def merge_snapshots(inbox, vault):
    """Every snapshot once, by the id the master gave it: a vault copy (restic copy keeps
    the inbox id as "original") stands for its inbox snapshot and is preferred (nothing on
    the master can delete it). Each entry: restic's fields with "id" the shown id, and
    "repo" ("vault" or "inbox") and "repo_id" where restic finds it."""
    merged = {}
    for s in inbox:
        merged[s["id"]] = dict(s, repo="inbox", repo_id=s["id"])
    for s in vault:
        shown = s.get("original") or s["id"]
        merged[shown] = dict(s, id=shown, repo="vault", repo_id=s["id"])
    return sorted(merged.values(), key=lambda s: s["time"])


def all_snapshots():
    """merge_snapshots of what the inbox and the vault hold; either may be missing or
    unreadable (a vault not made yet; an inbox someone deleted), not both."""
    found, errors = {}, {}

    def read(where):
        try:
            found[where] = snapshots_raw(vault=(where == "vault"))
        except Fail as e:
            errors[where] = e
            found[where] = []

    # both at once: each is a restic call that waits on the backup node
    vault = threading.Thread(target=read, args=("vault",))
    vault.start()
    try:
        read("inbox")
    finally:
        vault.join()
    if "inbox" in errors and "vault" in errors:
        raise errors["inbox"]
    for where, e in errors.items():
        if not (where == "vault" and "no repository" in str(e)):
            log(f"warning: the {where} cannot be read ({e}); listing the other only")
    return merge_snapshots(found["inbox"], found["vault"])


def _sizes():
    try:
        with open(SIZES) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _cache_size(short_id, size):
    sizes = _sizes()
    sizes[short_id] = size
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    write_json_atomic(SIZES, sizes)


def append_history(short_id, at, size, added):
    """One line per snapshot: {at, snapshot, size_bytes, data_added, repo_bytes}, the last HISTORY_LINES.
    repo_bytes adds up what each snapshot added to the repository (restic's data_added): an
    estimate of its size that does not see what retention removes later. Never fails a snapshot."""
    try:
        with open(HISTORY) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
    except OSError:
        lines = []
    try:
        previous = json.loads(lines[-1]).get("repo_bytes", 0) if lines else 0
    except ValueError:
        previous = 0
    entry = {"at": at, "snapshot": short_id, "size_bytes": size, "data_added": added, "repo_bytes": previous + added}
    lines = lines[-(HISTORY_LINES - 1):] + [json.dumps(entry, sort_keys=True)]
    try:
        os.makedirs(STATE, mode=0o700, exist_ok=True)
        with open(HISTORY + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(HISTORY + ".tmp", HISTORY)
    except OSError as e:
        log(f"history.jsonl not written: {e}")


def snapshot_size(snap):
    """A snapshot's restore size (an entry of merge_snapshots): recorded when it was taken,
    else `restic stats` (once)."""
    sid = snap["id"]
    cached = _sizes().get(sid[:8])
    if cached is not None:
        return cached
    rc, out, err = restic("stats", "--json", snap["repo_id"], vault=snap["repo"] == "vault", lock=False)
    if rc != 0:
        raise _restic_error(f"restic stats {sid}", err, snap["repo"] == "vault")
    size = json.loads(out)["total_size"]
    _cache_size(sid[:8], size)
    return size


def describe(snap, size):
    tags = snap.get("tags") or []
    label = next((t[len("label:"):] for t in tags if t.startswith("label:")), None)
    return {"id": snap["id"][:8], "time": snap["time"], "label": label,
            "tags": [t for t in tags if not t.startswith("label:")], "size_bytes": size}


# ---------------------------------------------------------------- docker ---

class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self._path)


def docker(method, path):
    conn = _UnixHTTP(DOCKER_SOCK)
    try:
        conn.request(method, path, headers={"Host": "docker"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, (json.loads(body) if body and body[:1] in b"[{" else body)
    finally:
        conn.close()


def _self_id():
    try:
        with open("/proc/self/mountinfo") as f:
            m = re.search(r"/containers/([0-9a-f]{64})/", f.read())
        return m.group(1) if m else None
    except OSError:
        return None


def _save_paused(paused):
    if paused:
        write_json_atomic(PAUSED_FILE, paused)
    elif os.path.exists(PAUSED_FILE):
        os.remove(PAUSED_FILE)


def handed(name):
    """The environment variable ``name`` that lapinfra sets on every container of this tool."""
    value = os.environ.get(name)
    if not value:
        raise Fail(f"{name} is not set (lapinfra sets it on the backup container: lapinfra/services.py)")
    return value


def pause_all(only=None):
    """Pauses running containers named BACKUP_PAUSE_PREFIX* (not this one, nor BACKUP_CONTAINER);
    with ``only``, just those of these names."""
    prefix, backup_container = handed("BACKUP_PAUSE_PREFIX"), handed("BACKUP_CONTAINER")
    me = _self_id()
    try:
        status, conts = docker("GET", "/containers/json")
    except OSError as e:
        raise Fail(f"Docker API at {DOCKER_SOCK} not reachable: {e}")
    if status != 200:
        raise Fail(f"Docker API: GET /containers/json -> {status}")
    paused = []
    try:
        for c in sorted(conts, key=lambda c: c["Names"][0]):
            name = c["Names"][0].lstrip("/")
            if (not name.startswith(prefix) or name == backup_container or c["Id"] == me
                    or c.get("State") != "running" or (only is not None and name not in only)):
                continue
            status, body = docker("POST", f"/containers/{c['Id']}/pause")
            if status == 204:
                paused.append({"id": c["Id"], "name": name, "since": time.time()})
                _save_paused(paused)      # recorded before anything else can fail
            else:
                log(f"could not pause {name}: {status} {body!r}")
    except BaseException:   # the caller's finally never saw this list: unpause here
        unpause_all(paused)
        raise
    if paused:
        log("paused " + ", ".join(p["name"] for p in paused))
    return paused


def _is_paused(cid):
    """Whether the container is (still) paused; True when the engine cannot tell."""
    try:
        status, body = docker("GET", f"/containers/{cid}/json")
    except OSError:
        return True
    if status == 404:
        return False
    return not (status == 200 and isinstance(body, dict) and not (body.get("State") or {}).get("Paused"))


def unpause_all(paused):
    left = list(paused)
    for p in paused:
        try:
            status, body = docker("POST", f"/containers/{p['id']}/unpause")
        except OSError as e:
            log(f"could not unpause {p['name']}: {e}")
            continue
        if status in (204, 404) or not _is_paused(p["id"]):
            # gone, or no longer paused: stopped, removed or recreated meanwhile (a deploy, a
            # `docker stop`: the engine answers 409 or 500 "is not paused" to the unpause)
            left.remove(p)
        else:
            log(f"could not unpause {p['name']}: {status} {body!r}")
    _save_paused(left)
    if paused:
        log("unpaused " + ", ".join(p["name"] for p in paused if p not in left))
    if left:
        raise Fail("containers left paused: " + ", ".join(p["name"] for p in left))


def recover_paused():
    """Unpauses containers a killed run (SIGKILL) left paused; the names unpaused.
    Must hold op_lock: a live run's pause is its own to end."""
    if not os.path.exists(PAUSED_FILE):
        return []
    with open(PAUSED_FILE) as f:
        paused = json.load(f)
    log("unpausing containers left paused by an interrupted run: "
        + ", ".join(p["name"] for p in paused))
    unpause_all(paused)
    return [p["name"] for p in paused]


def left_paused(now, engine_paused, recorded, seen, limit):
    """Which infra containers have been paused longer than ``limit`` seconds.

    ``engine_paused``: names the engine reports paused; ``recorded``: PAUSED_FILE's
    entries (name, since) of the pauses lapbackup made; ``seen``: name -> when health
    first saw a pause nobody recorded. Returns (problems, seen to keep)."""
    since = {p["name"]: p.get("since", now) for p in recorded}
    seen = {name: seen.get(name, now) for name in engine_paused if name not in since}
    problems = []
    for name in sorted(engine_paused):
        held = now - since.get(name, seen.get(name, now))
        if held > limit:
            problems.append({"name": name, "paused_s": round(held)})
    return problems, seen


def _read_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def engine_paused_names():
    """The BACKUP_PAUSE_PREFIX* containers the engine reports paused."""
    prefix = handed("BACKUP_PAUSE_PREFIX")
    query = urllib.parse.quote(json.dumps({"status": ["paused"]}))
    status, conts = docker("GET", f"/containers/json?filters={query}")
    if status != 200:
        raise OSError(f"GET /containers/json -> {status}")
    names = [c["Names"][0].lstrip("/") for c in conts if c.get("State", "paused") == "paused"]
    return [n for n in names if n.startswith(prefix)]


class op_lock:
    """One operation at a time per /srv/data (scheduler vs docker exec ...). Whoever
    takes it first finishes or undoes an interrupted restore and unpauses what a killed
    run left paused (``self.recovered``)."""

    def __enter__(self):
        self.f = open(LOCK_FILE, "a")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another lapbackup operation is running; waiting")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        try:
            self.recovered = recover_all()
        except BaseException:
            self.f.close()
            raise
        return self

    def __exit__(self, *exc):
        self.f.close()


def recover_all():
    """What `lapbackup recover` reports: the interrupted swap finished or undone (first:
    nothing may read or write /srv/data half swapped), then the containers unpaused."""
    return {"swap": recover_swap(), "unpaused": recover_paused()}


def recover_if_idle():
    """recover_all when no other lapbackup run holds the lock (a live run's pause and swap
    are its own); None when one does, or when /srv/data is not mounted (the command says so)."""
    if not os.path.isdir(DATA):
        return None
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return recover_all()


# ---------------------------------------------------------------- commands --

def deployed_commit_tag():
    """commit=<release> of the deploy recorded on the node, for scheduled snapshots."""
    try:
        with open(f"{DATA}/{RELEASE_REL}") as f:
            return [f"commit={json.load(f)['release']}"]
    except (OSError, ValueError, KeyError):
        return []


def do_snapshot(label=None, tags=(), progress=None, pause_everything=False):
    """Must hold op_lock. Returns the JSON description of the new snapshot;
    progress["snapshot"] is set as soon as the snapshot exists.

    One restic call when all is well (``backup``, which also reports the size):
    the repository is created, or stale locks removed, only when backup says so.
    Consistency: the frozen copies of BACKUP_FREEZE (see the module's docstring), or with
    ``pause_everything`` every infra container paused for the whole backup."""
    if os.environ.get("BACKUP_ENV"):   # whose data this is: a restore elsewhere is refused
        tags = [t for t in tags if not t.startswith("env=")] + [f"env={os.environ['BACKUP_ENV']}"]
    for t in list(tags) + ([label] if label else []):
        if "," in t or not t.strip():
            raise Fail(f"invalid tag/label {t!r} (no commas, not empty)")
    for t in tags:
        if "=" not in t and not re.fullmatch(r"[a-z][a-z0-9-]*", t):
            raise Fail(f"tag {t!r} is neither K=V nor a lower-case word (like safety)")
    policy = {} if pause_everything else freeze_policy()
    args = ["backup", "--json"]
    for e in EXCLUDES + frozen_excludes(policy):
        args += ["--exclude", e]
    for t in ([f"label:{label}"] if label else []) + list(tags):
        args += ["--tag", t]
    backup = _backup_paused if pause_everything else (lambda a: _backup_frozen(a, policy))
    if pause_everything:            # a killed run's frozen copies must not come into this one
        shutil.rmtree(os.path.join(DATA, FREEZE_NAME), ignore_errors=True)
    started = now_iso()
    rc, out, err, held = backup(args + [DATA])
    if rc != 0 and ("Is there a repository" in err or "repository is already locked" in err):
        ensure_repo()                 # init a missing repository / drop stale locks, then again
        started = now_iso()
        rc, out, err, held = backup(args + [DATA])
    summary = None
    for line in out.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("message_type") == "summary":
            summary = doc
    if rc != 0 or not summary or not summary.get("snapshot_id"):
        if rc == 3 and summary:
            raise Fail(f"snapshot {summary['snapshot_id'][:8]} is incomplete: some files "
                       f"could not be read ({err.splitlines()[-1:]})")
        raise _restic_error("restic backup", err)
    sid = summary["snapshot_id"]     # restic 0.14 reports the short id here
    if progress is not None:
        progress["snapshot"] = sid[:8]
    size = summary.get("total_bytes_processed", 0)   # every file's size: what a restore writes
    _cache_size(sid[:8], size)
    append_history(sid[:8], started, size, summary.get("data_added_packed", summary.get("data_added", 0)))
    snap = {"id": sid, "time": started, "tags": ([f"label:{label}"] if label else []) + list(tags)}
    result = describe(snap, size)
    result["paused"] = [p["name"] for p in held if p.get("paused_ms", 1) > 0]
    result["frozen"] = [{"name": p["name"], "paused_ms": p.get("paused_ms")} for p in held]
    return result


def _backup_paused(args):
    """restic backup with every writer paused for exactly that long (the old way)."""
    paused = []
    try:
        paused = pause_all()
        rc, out, err = restic(*args)
    finally:
        unpause_all(paused)
    return rc, out, err, paused


def _backup_frozen(args, policy):
    """restic backup of the live files and the frozen copies (removed afterwards)."""
    try:
        frozen = copy_frozen(policy) if policy else []
        rc, out, err = restic(*args)
    finally:
        shutil.rmtree(os.path.join(DATA, FREEZE_NAME), ignore_errors=True)
    return rc, out, err, frozen


# ------------------------------------------------------ frozen copies ---

def freeze_policy(raw=None):
    """BACKUP_FREEZE: container name -> paths below /srv/data (globs allowed) that it writes
    in place (a database, a journal), so that only a copy made while it is paused is consistent."""
    raw = os.environ.get("BACKUP_FREEZE", "") if raw is None else raw
    if not raw.strip():
        return {}
    try:
        policy = json.loads(raw)
    except ValueError as e:
        raise Fail(f"BACKUP_FREEZE is not JSON ({e})")
    example = '{"infra_trac": ["trac/env/db"]}'
    if not isinstance(policy, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v)
            for k, v in policy.items()):
        raise Fail(f"BACKUP_FREEZE must map container names to lists of paths, like {example}")
    for paths in policy.values():
        for p in paths:
            parts = p.strip("/").split("/")
            if p.startswith("/") or ".." in parts or not p.strip("/") or parts[0] == FREEZE_NAME:
                raise Fail(f"BACKUP_FREEZE path {p!r} must be relative to /srv/data, without '..'")
    return policy


def frozen_excludes(policy):
    """restic patterns of the live files the snapshot takes from the frozen copies instead."""
    return [f"{DATA}/{p.strip('/')}" for paths in policy.values() for p in paths]


def copy_frozen(policy):
    """Copies each container's BACKUP_FREEZE paths to DATA/.lapsnap/<same path>, the
    container paused for just its own copy (not at all when it is not running); index.json
    lists the copies. What was held and how long: [{"name", "paused_ms", "paths"}]."""
    target = os.path.join(DATA, FREEZE_NAME)
    shutil.rmtree(target, ignore_errors=True)       # a killed run's leftovers
    os.mkdir(target, 0o700)
    held, index = [], []
    for name, patterns in sorted(policy.items()):
        started = time.monotonic()
        paused = pause_all(only={name})
        try:
            copied = _copy_matches(patterns, target)
        finally:
            unpause_all(paused)
        paused_ms = round((time.monotonic() - started) * 1000, 1) if paused else 0.0
        held.append({"name": name, "paused_ms": paused_ms, "paths": copied})
        index += copied
    write_json_atomic(os.path.join(target, "index.json"), index)
    if held:
        log("frozen copies: " + ", ".join(f"{h['name']} {h['paused_ms']} ms" for h in held))
    return held


def _copy_matches(patterns, target):
    import glob
    copied = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(DATA, pattern.strip("/")))):
            rel = os.path.relpath(path, DATA)
            dst = os.path.join(target, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.copytree(path, dst, symlinks=True)
            else:
                shutil.copy2(path, dst, follow_symlinks=False)
            _same_owners(path, dst)
            copied.append(rel)
    return copied


def _same_owners(src, dst):
    """dst (a copy of src, made by root) owned as src is, every entry below it too: the
    service must own its database again after a restore."""
    st = os.lstat(src)
    os.lchown(dst, st.st_uid, st.st_gid)
    if os.path.isdir(dst) and not os.path.islink(dst):
        for root, dirs, files in os.walk(dst):
            for name in dirs + files:
                copy = os.path.join(root, name)
                st = os.lstat(os.path.join(src, os.path.relpath(copy, dst)))
                os.lchown(copy, st.st_uid, st.st_gid)


def place_frozen_copies(root):
    """In a restored tree ``root`` (the snapshot's /srv/data): each frozen copy back to its
    place, then the .lapsnap folder gone. A snapshot without one is left as it is."""
    store = os.path.join(root, FREEZE_NAME)
    if not os.path.isdir(store):
        return []
    index = _read_json(os.path.join(store, "index.json"), [])
    for rel in index:
        src, dst = os.path.join(store, rel), os.path.join(root, rel)
        if not os.path.lexists(src):
            continue
        if os.path.lexists(dst):    # a snapshot taken without the exclude: the copy wins
            shutil.rmtree(dst) if os.path.isdir(dst) and not os.path.islink(dst) else os.remove(dst)
        parent = os.path.dirname(dst)
        os.makedirs(parent, exist_ok=True)
        times = os.lstat(parent)
        os.rename(src, dst)
        os.utime(parent, ns=(times.st_atime_ns, times.st_mtime_ns))   # as the snapshot has it
    shutil.rmtree(store)
    return index


def stored_path(rel, policy=None):
    """Where a path below /srv/data is in a snapshot: its frozen copy's place when
    BACKUP_FREEZE covers it."""
    policy = freeze_policy() if policy is None else policy
    rel = rel.strip("/")
    for paths in policy.values():
        for p in paths:
            p = p.strip("/")
            if fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p + "/*"):
                return f"{FREEZE_NAME}/{rel}"
    return rel


def cmd_snapshot(a):
    prepare()
    with op_lock():
        return do_snapshot(a.label, a.tag or [], pause_everything=a.pause_all)


def cmd_list(_a):
    prepare()
    return [describe(s, snapshot_size(s)) for s in all_snapshots()]


def cmd_digest(a):
    """sha256 of one (text) file as stored in a snapshot, e.g. lapinfra/release.json."""
    prepare()
    tags = getattr(a, "tag", None) or ()
    if a.id == "latest" and tags:
        found = _digest_of_latest_tagged(a.path, tags)
        if found is not None:
            return found
    # "latest" is this environment's own (resolve), not restic's latest of any tag
    snap = resolve(a.id, all_snapshots(), tags=tags)
    path = "/srv/data/" + stored_path(a.path)
    rc, out, err = restic("dump", snap["repo_id"], path, vault=snap["repo"] == "vault", lock=False)
    if rc != 0 and path != "/srv/data/" + a.path.strip("/"):    # a snapshot from before the freeze
        rc, out, err = restic("dump", snap["repo_id"], "/srv/data/" + a.path.strip("/"), vault=snap["repo"] == "vault",
                              lock=False)
    if rc != 0:
        raise _restic_error("restic dump", err, snap["repo"] == "vault")
    return {"id": a.id, "snapshot": snap["id"][:8], "path": a.path, "sha256": hashlib.sha256(out.encode()).hexdigest()}


def _digest_of_latest_tagged(path, tags):
    """The digest of ``path`` in the inbox's newest snapshot of /srv/data that carries every tag of
    ``tags`` and this environment's own, in one restic call (restic picks "latest" by those tags),
    or None: none there, a snapshot from before the freeze, any error. Then the caller lists both
    repositories and resolves the snapshot itself (three restic calls, each of which first derives
    the repository's key: about half a second of CPU)."""
    own = os.environ.get("BACKUP_ENV")
    if not own:
        return None
    wanted = [t for t in tags if not t.startswith("env=")] + [f"env={own}"]
    rc, out, _ = restic("dump", "--path", DATA, "--tag", ",".join(wanted), "latest", "/srv/data/" + stored_path(path),
                        quiet_errors=True, lock=False)
    if rc != 0:
        return None
    return {"id": "latest", "snapshot": "latest tagged " + ",".join(wanted), "path": path,
            "sha256": hashlib.sha256(out.encode()).hexdigest()}


def check_vault(attempts=4, pause=5.0):
    """restic check of the vault, read without a lock: the backup node (lapvault) can be
    mid-copy or mid-prune, so a failed check is asked again before it counts."""
    for attempt in range(attempts):
        vrc, vout, verr = restic("check", vault=True, quiet_errors=True)
        if vrc == 0 or "Is there a repository at the following location?" in verr or attempt == attempts - 1:
            return vrc, vout, verr
        log(f"vault check failed ({(verr.strip().splitlines() or ['?'])[-1]}); again in {pause:.0f} s")
        time.sleep(pause)


def check_inbox():
    """restic check of the inbox, (rc, stdout, stderr). A lock a killed run left behind is
    removed (restic unlock: stale locks only) and the check asked again; a repository that
    cannot be opened (none, wrong password, host key, refused key) is a Fail, as before.
    Opening the repository is the check's own first step: no separate calls ahead of it."""
    rc, out, err = restic("check")
    if rc != 0 and "already locked" in err:
        log("the inbox is locked; removing stale locks and checking again")
        restic("unlock")
        rc, out, err = restic("check")
    if rc != 0 and any(sign in err for sign in ("wrong password", "Host key verification failed",
                                                 "Permission denied", "Is there a repository at the following location?")):
        raise _restic_error("restic check", err)
    return rc, out, err


def cmd_check(_a):
    """restic check of the inbox and, when the backup node made it, of the vault."""
    prepare()
    with op_lock():
        # the two repositories are checked at once: each check waits on the backup node
        # (sftp), and the vault's check takes no lock the inbox's could wait for
        vault = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        vault_check = vault.submit(check_vault)
        try:
            rc, out, err = check_inbox()
            vrc, vout, verr = vault_check.result()
        finally:
            vault.shutdown(wait=True)
    lines = (out + "\n" + err).strip().splitlines()[-15:]
    if "Is there a repository at the following location?" in verr:
        vrc, vlines = 0, ["vault: none yet (the backup node makes it after the first snapshot)"]
    else:
        vlines = ["vault: " + l for l in (vout + "\n" + verr).strip().splitlines()[-15:]]
    ok = rc == 0 and vrc == 0
    return {"ok": ok, "output": "\n".join(lines + vlines)}, (0 if ok else 1)


def resolve(wanted, snaps, tags=()):
    """The snapshot ``wanted`` names: an id (prefix), or "latest": this environment's newest,
    of those that carry every tag of ``tags`` (e.g. commit=<release>)."""
    if wanted == "latest":
        snaps = [s for s in snaps if set(tags) <= set(s.get("tags") or [])]
        own = os.environ.get("BACKUP_ENV")
        # "latest" is this environment's own latest: a snapshot fetched from another
        # environment (tag env=<other>) is restored only by name, through snapshot.fetch
        snaps = [s for s in snaps if not own or f"env={own}" in (s.get("tags") or [])
                 or not any(t.startswith("env=") for t in (s.get("tags") or []))]
        mine = [s for s in snaps if DATA in (s.get("paths") or [])] or snaps
        if not mine:
            raise Fail("the repository has no snapshots" + (f" tagged {', '.join(tags)}" if tags else ""))
        return max(mine, key=lambda s: s["time"])
    if not re.fullmatch(r"[0-9a-f]{4,64}", wanted):
        raise Fail(f"invalid snapshot id {wanted!r}")
    match = [s for s in snaps if s["id"].startswith(wanted)]
    if not match:
        raise Fail(f"unknown snapshot id {wanted!r}; /srv/data left untouched")
    if len(match) > 1:
        raise Fail(f"ambiguous snapshot id {wanted!r}; /srv/data left untouched")
    return match[0]


def _kept_paths(extra=()):
    """Paths (relative to DATA) restore keeps as they are, and their ancestors.
    ``extra`` paths are kept even when absent: the snapshot's copy never comes in."""
    keep = {r for r in KEEP_REL if os.path.lexists(os.path.join(DATA, r))}
    keep |= {os.path.normpath(r).strip("/") for r in extra}
    for root, dirs, files in os.walk(DATA):
        rel = os.path.relpath(root, DATA)
        rel = "" if rel == "." else rel
        for name in dirs + files:
            if fnmatch.fnmatch(name, KEEP_GLOB):
                keep.add(os.path.join(rel, name))
        dirs[:] = [d for d in dirs if os.path.join(rel, d) not in keep]
    ancestors = set()
    for k in keep:
        parts = k.split("/")
        for i in range(1, len(parts)):
            ancestors.add("/".join(parts[:i]))
    return keep, ancestors


def _meta(st):
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o7777,
            "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns}


def _apply_meta(meta, path):
    os.chown(path, meta["uid"], meta["gid"])
    os.chmod(path, meta["mode"])
    os.utime(path, ns=(meta["atime_ns"], meta["mtime_ns"]))


# ------------------------------------------------------------ the swap ---
#
# A restore makes /srv/data exactly the snapshot restored into TMP by renames only,
# following a plan written (atomically, fsync'd) to JOURNAL, on the same filesystem,
# before the first rename:
#   out   a live entry to TMP/replaced/<n>        done when its "to" exists
#   in    the snapshot's entry to its live place  done when its "from" is gone
#   meta  a directory's owner, mode and times     "old" (live) and "new" (snapshot)
# Each path in TMP is renamed at most once, so after a kill at any instant the
# journal and the filesystem tell exactly which renames happened. recover_swap then
# finishes a swap whose renames all happened and undoes any other (reverse order):
# /srv/data is always either as before the restore or exactly the snapshot. The
# journal's state ("swapping", then "committed" or "undone") is written before
# anything in TMP is deleted, so the cleanup is safe to repeat.

def plan_swap(dst, src, keep, ancestors, trash, rel="", plan=None):
    """The steps that make dst like src (kept paths stay): data, nothing changed yet."""
    plan = [] if plan is None else plan
    staying = set()
    for name in sorted(os.listdir(dst)):
        r = f"{rel}/{name}" if rel else name
        path = os.path.join(dst, name)
        if r in keep:
            staying.add(name)
            continue
        if r in ancestors and os.path.isdir(path) and not os.path.islink(path):
            s = os.path.join(src, name) if src else None
            s = s if s and os.path.isdir(s) and not os.path.islink(s) else None
            if s is None and src and os.path.lexists(os.path.join(src, name)):
                log(f"warning: {r} is not a directory in the snapshot but holds kept paths; "
                    f"keeping the directory")
            staying.add(name)
            plan_swap(path, s, keep, ancestors, trash, r, plan)
            continue
        plan.append({"op": "out", "from": path, "to": os.path.join(trash, str(len(plan) + 1))})
    if src is None:
        return plan
    for name in sorted(os.listdir(src)):
        r = f"{rel}/{name}" if rel else name
        if r in keep or fnmatch.fnmatch(name, KEEP_GLOB) or name in staying:
            continue
        plan.append({"op": "in", "from": os.path.join(src, name), "to": os.path.join(dst, name)})
    plan.append({"op": "meta", "path": dst, "old": _meta(os.lstat(dst)), "new": _meta(os.lstat(src))})
    return plan


def _step_done(step):
    if step["op"] == "out":
        return os.path.lexists(step["to"])
    if step["op"] == "in":
        return not os.path.lexists(step["from"])
    return False


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_journal(journal):
    """Atomically and durably: aside, fsync, rename, fsync the folder."""
    tmp = JOURNAL + ".new"
    with open(tmp, "w") as f:
        json.dump(journal, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, JOURNAL)
    _fsync_dir(os.path.dirname(JOURNAL))


def read_journal():
    """The journal of a swap, None when there is none (a torn .new is ignored)."""
    try:
        with open(JOURNAL) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise Fail(f"the restore journal {JOURNAL} cannot be read ({e}); /srv/data may be "
                   f"half swapped: inspect it before anything else runs")


def _no_hook(_point):
    pass


def _sync_renames(plan):
    for d in sorted({os.path.dirname(p) for st in plan if st["op"] != "meta" for p in (st["from"], st["to"])}):
        if os.path.isdir(d):
            _fsync_dir(d)


def run_swap(plan, snapshot, hook=_no_hook):
    """Carries out the plan through the journal; ``hook(point)`` runs after each step
    (tests kill the swap there). A kill at any point is repaired by recover_swap."""
    journal = {"snapshot": snapshot, "state": "swapping", "steps": plan}
    write_journal(journal)
    hook("journal")
    for k, step in enumerate(plan):
        if step["op"] == "meta":
            _apply_meta(step["new"], step["path"])
        else:
            os.rename(step["from"], step["to"])
        hook(f"step {k + 1} ({step['op']})")
    _commit(journal, hook)


def _commit(journal, hook):
    _sync_renames(journal["steps"])
    journal["state"] = "committed"
    write_journal(journal)
    hook("committed")
    _clean_up(journal, hook)


def _undo(journal, hook):
    steps = journal["steps"]
    undone = 0
    for step in reversed(steps):
        if step["op"] != "meta" and _step_done(step):
            os.rename(step["to"], step["from"])
            undone += 1
            hook(f"undo {step['op']}")
    for step in reversed(steps):
        if step["op"] == "meta":
            _apply_meta(step["old"], step["path"])
    _sync_renames(steps)
    journal["state"] = "undone"
    write_journal(journal)
    hook("undone")
    _clean_up(journal, hook)
    return undone


def _clean_up(journal, hook):
    """Deletes TMP (the snapshot's leftovers or the replaced entries), the journal last."""
    for name in sorted(os.listdir(TMP)):
        path = os.path.join(TMP, name)
        if path in (JOURNAL, JOURNAL + ".new"):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        hook(f"clean {name}")
    os.remove(JOURNAL)
    hook("journal removed")
    shutil.rmtree(TMP)
    root = next((st for st in journal["steps"] if st["op"] == "meta" and st["path"] == DATA), None)
    if root:   # removing TMP touched /srv/data's own times
        _apply_meta(root["new" if journal["state"] == "committed" else "old"], DATA)


def recover_swap(hook=_no_hook):
    """Finishes or undoes a swap a kill interrupted; what it did (None: nothing to do)."""
    if not os.path.lexists(TMP):
        return None
    journal = read_journal()
    if journal is None:    # before the journal (restic restore) or after the swap's end
        log(f"removing the leftover {TMP} of an earlier restore (it had not begun to "
            f"change {DATA}, or had finished)")
        shutil.rmtree(TMP)
        return {"action": "removed leftover", "snapshot": None}
    sid = (journal.get("snapshot") or "")[:8]
    renames = [st for st in journal["steps"] if st["op"] != "meta"]
    if journal["state"] in ("committed", "undone"):
        action = "finished" if journal["state"] == "committed" else "undone"
        log(f"cleaning up after the interrupted restore of snapshot {sid} ({action})")
        _clean_up(journal, hook)
        return {"action": action, "snapshot": sid}
    if all(_step_done(st) for st in renames):
        log(f"finishing the interrupted restore of snapshot {sid}: every entry was already in place")
        for st in journal["steps"]:
            if st["op"] == "meta":
                _apply_meta(st["new"], st["path"])
        _commit(journal, hook)
        return {"action": "finished", "snapshot": sid}
    done = sum(1 for st in renames if _step_done(st))
    log(f"undoing the interrupted restore of snapshot {sid}: {done} of {len(renames)} "
        f"renames were done; {DATA} goes back to its state before that restore")
    _undo(journal, hook)
    return {"action": "undone", "snapshot": sid, "renames_undone": done}


def cmd_recover(_a):
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    if not os.path.isdir(DATA):
        raise Fail(f"{DATA} missing (node /data not mounted?)")
    with op_lock() as lock:
        return lock.recovered


def cmd_restore(a, hook=_no_hook):
    prepare()
    with op_lock():
        snap = resolve(a.id, all_snapshots())
        sid = snap["id"]
        if snap["repo"] == "inbox":
            ensure_repo(create=False)      # stale locks of a killed run would block the read
        if os.path.lexists(TMP):          # no journal: recover_swap would have dealt with it
            log(f"removing leftover {TMP}")
            shutil.rmtree(TMP)
        os.mkdir(TMP, 0o700)
        try:
            rc, _, err = restic("restore", snap["repo_id"], "--target", TMP, vault=snap["repo"] == "vault")
            if rc != 0:
                raise _restic_error(f"restic restore {sid[:8]} (/srv/data left untouched)", err, snap["repo"] == "vault")
            src = TMP + DATA
            if not os.path.isdir(src):
                raise Fail(f"snapshot {sid[:8]} does not contain {DATA}; /srv/data left untouched")
            place_frozen_copies(src)
            trash = os.path.join(TMP, "replaced")
            os.mkdir(trash, 0o700)
            keep, ancestors = _kept_paths((*(a.keep or ()), *ALWAYS_KEEP))
            if a.keep:
                log("keeping the node's own " + ", ".join(sorted(a.keep)))
            plan = plan_swap(DATA, src, keep, ancestors, trash)
            paused = []
            try:
                paused = pause_all()
                log(f"replacing the contents of {DATA} with snapshot {sid[:8]}")
                try:
                    run_swap(plan, sid, hook)
                except BaseException as e:   # a signal or an error: undo now, not at the next run
                    log(f"restore interrupted ({type(e).__name__}: {e}); repairing {DATA}")
                    repaired = recover_swap()
                    log(f"{DATA} is {'the snapshot' if repaired and repaired['action'] == 'finished' else 'as it was before'}")
                    raise
            finally:
                unpause_all(paused)
        finally:
            if read_journal() is None:     # never delete what a journal still needs
                shutil.rmtree(TMP, ignore_errors=True)
    log(f"restored snapshot {sid[:8]}")
    return {"restored": sid[:8]}


def cmd_status(_a):
    try:
        with open(STATUS) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"last_run": None}


def cmd_health(_a, now=None):
    """The scheduler's last run, and the infra containers left paused too long."""
    st = cmd_status(_a)
    ok = st.get("last_run") is None or st.get("outcome") == "ok"
    limit = float(os.environ.get("BACKUP_MAX_PAUSE_S", MAX_PAUSE))
    try:
        engine = engine_paused_names()
    except OSError as e:   # the engine's answer is only one of the two checks
        st["paused_error"] = f"cannot ask the Docker API: {e}"
        return st, (0 if ok else 1)
    problems, seen = left_paused(time.time() if now is None else now, engine,
                                 _read_json(PAUSED_FILE, []), _read_json(SEEN_PAUSED, {}), limit)
    if seen:
        write_json_atomic(SEEN_PAUSED, seen)
    elif os.path.exists(SEEN_PAUSED):
        os.remove(SEEN_PAUSED)
    st["paused"] = engine
    if problems:
        st["left_paused"] = problems
        log("paused longer than {:.0f}s: ".format(limit)
            + ", ".join(f"{p['name']} ({p['paused_s']}s)" for p in problems))
        ok = False
    return st, (0 if ok else 1)


def cmd_scheduler(_a):
    interval = int(os.environ.get("BACKUP_INTERVAL", "3600"))
    if interval < 1:
        raise Fail("BACKUP_INTERVAL must be >= 1")
    prepare()
    log(f"scheduler: every {interval}s to {os.environ['BACKUP_REPOSITORY']}; retention runs on "
        f"the backup node (its vault), not here: this key cannot delete there")
    try:
        with op_lock():
            ensure_repo()
    except Exception as e:  # not fatal: every run retries
        log(f"repository not ready yet: {e}")
    # honour the schedule across restarts: next run = last run + interval
    next_run = time.time()
    last = cmd_status(None)
    if last.get("next_run"):
        try:
            t = datetime.datetime.fromisoformat(last["next_run"]).timestamp()
            next_run = min(max(t, time.time()), time.time() + interval)
        except ValueError:
            pass
    while True:
        delay = next_run - time.time()
        if delay > 0:
            log(f"next run at {now_iso(next_run)}")
            time.sleep(delay)
        start = time.time()
        next_run = start + interval
        result = {"last_run": now_iso(start), "outcome": "ok", "snapshot": None,
                  "duration_s": 0.0, "error": None, "next_run": None}
        try:
            prepare()
            with op_lock():
                do_snapshot("scheduled", tags=deployed_commit_tag(), progress=result)
        except Exception as e:   # a failed run must not stop the loop
            result["outcome"] = "failed"
            result["error"] = str(e)
            log(f"scheduled run failed: {e}")
        result["duration_s"] = round(time.time() - start, 3)
        next_run = max(next_run, time.time())
        result["next_run"] = now_iso(next_run)
        write_json_atomic(STATUS, result)
        log(f"scheduled run {result['outcome']}: snapshot {result['snapshot']} "
            f"in {result['duration_s']}s")
        refresh_drill_copy_quietly()


# ---------------------------------------------------------------- drills ---
# The backup node's restore drills (nodes/image/lapvault drill) record their result where
# the sftp user may read it; the master keeps a copy for its status page and the suite.

DRILL_REMOTE = "/lapinfra/vault/drill.json"    # the backup node's /data/lapinfra/vault/drill.json, in the chroot
DRILL_COPY = STATE + "/drill.json"             # the master's copy (node /data/backup/drill.json)
SFTP_TIMEOUT = 60


def sftp_endpoint():
    """(user, host, port or None) of the sftp repository BACKUP_REPOSITORY."""
    repo = os.environ.get("BACKUP_REPOSITORY", "")
    if repo.startswith("sftp://"):
        u = urllib.parse.urlsplit(repo)
        return u.username, u.hostname, u.port
    if repo.startswith("sftp:"):
        user, _, host = repo[len("sftp:"):].split(":", 1)[0].rpartition("@")
        return user or None, host, None
    raise Fail(f"BACKUP_REPOSITORY must be an sftp: repository, got {repo!r}")


def sftp_get_command():
    """sftp in batch mode as the backup node's chrooted user, with the key and pinned host
    key restic uses (ssh_command); the commands come on stdin."""
    user, host, port = sftp_endpoint()
    if not host:
        raise Fail(f"no host in BACKUP_REPOSITORY {os.environ.get('BACKUP_REPOSITORY')!r}")
    cmd = ["sftp", "-q", "-b", "-", "-i", KEY_COPY, "-o", "IdentitiesOnly=yes",
           "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "GlobalKnownHostsFile=/dev/null",
           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
    if port:
        cmd += ["-P", str(port)]
    return cmd + [f"{user}@{host}" if user else host]


def valid_drill(doc):
    """Whether a document is a drill's record (what lapvault writes)."""
    return (isinstance(doc, dict) and isinstance(doc.get("ok"), bool) and isinstance(doc.get("at"), str)
            and isinstance(doc.get("checked"), list) and isinstance(doc.get("failures"), list))


def fetch_drill(run=subprocess.run):
    """The backup node's drill record, or None when it holds none (no drill ran yet)."""
    if not os.path.isfile(KEY_COPY):
        raise Fail(f"{KEY_COPY} missing: the backup key was not prepared")
    local = DRILL_COPY + ".fetched"
    try:
        try:
            p = run(sftp_get_command(), input=f"get {DRILL_REMOTE} {local}\n", capture_output=True, text=True,
                    errors="replace", timeout=SFTP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Fail(f"sftp to the backup node did not finish within {SFTP_TIMEOUT}s") from None
        if p.returncode != 0:
            err = (p.stderr or "").strip()
            if "not found" in err or "No such file" in err:
                return None
            if "remote open" in err:      # the file is there, the sftp user may not read it
                raise Fail(f"the backup node's {DRILL_REMOTE} is not readable by the sftp user ({err.splitlines()[-1]}); "
                           f"lapvault makes it readable by the group backup: is the backup node's image current?")
            raise _restic_error("reading the backup node's drill.json over sftp", err)
        with open(local) as f:
            doc = json.load(f)
    except ValueError:
        raise Fail(f"the backup node's {DRILL_REMOTE} is not JSON") from None
    finally:
        if os.path.exists(local):
            os.remove(local)
    if not valid_drill(doc):
        raise Fail(f"the backup node's {DRILL_REMOTE} is not a drill record: {json.dumps(doc)[:200]}")
    return doc


def refresh_drill_copy(fetch=None):
    """The master's copy made equal to the backup node's record (removed when it has none:
    an old copy must not speak for a backup node that lost its record); the record."""
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    doc = (fetch or fetch_drill)()
    if doc is None:
        if os.path.exists(DRILL_COPY):
            os.remove(DRILL_COPY)
        return {"at": None}
    write_json_atomic(DRILL_COPY, doc)
    return doc


def refresh_drill_copy_quietly():
    """The scheduler's refresh after each run: a failure is logged, never the run's."""
    try:
        doc = refresh_drill_copy()
        if doc.get("at") and not doc.get("ok"):
            log(f"the backup node's last restore drill ({doc['at']}) FAILED: " + "; ".join(doc["failures"])[:500])
    except Exception as e:
        log(f"could not read the backup node's drill record: {e}")


def cmd_drill_status(_a):
    prepare()
    return refresh_drill_copy()


# The scheduler and the lock-taking commands recover under op_lock themselves; health and
# status only read (health runs every 10 s inside infra_backup: it reports, never repairs).
NO_RECOVERY = ("scheduler", "health", "status", "recover", "drill-status")


def main(argv):
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    p = argparse.ArgumentParser(prog="lapbackup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("scheduler")
    s = sub.add_parser("snapshot")
    s.add_argument("--label")
    s.add_argument("--tag", action="append", metavar="K=V")
    s.add_argument("--pause-all", action="store_true",
                   help="pause every infra container for the whole backup (the old way; for benchmarks)")
    sub.add_parser("list")
    r = sub.add_parser("restore")
    r.add_argument("id", metavar="ID|latest")
    r.add_argument("--keep", action="append", metavar="PATH",
                   help="path below /data to keep as it is on the node (repeatable)")
    sub.add_parser("check")
    d = sub.add_parser("digest")
    d.add_argument("id", metavar="ID|latest")
    d.add_argument("path", help="path below /data")
    d.add_argument("--tag", action="append", help="with latest: the newest snapshot carrying this tag too (repeatable)")
    sub.add_parser("status")
    sub.add_parser("health")
    sub.add_parser("recover")
    sub.add_parser("drill-status")
    a = p.parse_args(argv or ["scheduler"])
    handler = {"scheduler": cmd_scheduler, "snapshot": cmd_snapshot, "list": cmd_list,
               "restore": cmd_restore, "check": cmd_check, "status": cmd_status,
               "health": cmd_health, "digest": cmd_digest, "recover": cmd_recover,
               "drill-status": cmd_drill_status}[a.cmd]
    try:
        if a.cmd not in NO_RECOVERY:
            recover_if_idle()
        result = handler(a)
    except Fail as e:
        log(f"ERROR: {e}")
        print(json.dumps({"error": str(e)}))
        return 1
    except Terminated as t:
        log(f"stopped by signal {t.args[0]}")
        return 0 if a.cmd == "scheduler" else 128 + t.args[0]
    rc = 0
    if isinstance(result, tuple):
        result, rc = result
    print(json.dumps(result, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
