"""Files lapinfra writes on a node (MasterSession.put, and a deploy's folders kept in sync:
facts.read_files, decisions.file_actions, the executor's writes): never readable by anyone
but their owner on the way, not even for a moment, whatever mode sftp creates them with.

The SFTP server is a stand-in that keeps a small file system (paths, modes, contents) and
records every operation, with an sftp server's behaviour: a new file gets the default mode
0644, a new folder the mode mkdir asks for (or 0755)."""
import hashlib
import posixpath
from types import SimpleNamespace

import pytest

from lapinfra import decisions, facts
from lapinfra.facts import FOLDER_MARK
from lapinfra.phases import MasterSession
from lapinfra.executor import Executor
from lapinfra.report import Recorder

DEFAULT_FILE, DEFAULT_DIR = 0o644, 0o755


class Node:
    """The node's file system: path -> ("dir"|"file", mode, bytes)."""

    def __init__(self):
        self.fs = {"/": ("dir", DEFAULT_DIR, b"")}
        self.log = []           # (operation, path, detail)
        self.exposed = []       # (path, mode) of every write another account could have read

    def mkdirs(self, path):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.fs.setdefault("/" + "/".join(parts[:i]), ("dir", DEFAULT_DIR, b""))

    def others_can_read(self, path) -> bool:
        """Could an account other than the owner open ``path`` now (every folder on the way
        searchable by others, the file readable by them)?"""
        kind, mode, _ = self.fs[path]
        folder = posixpath.dirname(path)
        while folder != "/":
            if not self.fs[folder][1] & 0o011:
                return False
            folder = posixpath.dirname(folder)
        return bool(mode & 0o044)


class File:
    def __init__(self, node, path):
        self.node, self.path = node, path

    def chmod(self, mode):
        kind, _, data = self.node.fs[self.path]
        self.node.fs[self.path] = (kind, mode, data)
        self.node.log.append(("fchmod", self.path, oct(mode)))

    def write(self, data):
        kind, mode, old = self.node.fs[self.path]
        if data and self.node.others_can_read(self.path):
            self.node.exposed.append((self.path, oct(mode)))
        self.node.fs[self.path] = (kind, mode, old + bytes(data))
        self.node.log.append(("write", self.path, len(data)))

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SFTP:
    def __init__(self, node):
        self.node = node

    def _parent_exists(self, path):
        if self.node.fs.get(posixpath.dirname(path), ("",))[0] != "dir":
            raise FileNotFoundError(path)

    def open(self, path, mode="r"):
        assert "w" in mode
        self._parent_exists(path)
        self.node.fs[path] = ("file", DEFAULT_FILE, b"")
        self.node.log.append(("open", path, mode))
        return File(self.node, path)

    file = open

    def putfo(self, fl, path, *a, **kw):
        with self.open(path, "wb") as f:
            f.write(fl.read())

    def chmod(self, path, mode):
        File(self.node, path).chmod(mode)

    def mkdir(self, path, mode=0o777):
        self._parent_exists(path)
        self.node.fs[path] = ("dir", mode & 0o755 if mode == 0o777 else mode, b"")
        self.node.log.append(("mkdir", path, oct(mode)))

    def rmdir(self, path):
        if any(p.startswith(path + "/") for p in self.node.fs):
            raise OSError("not empty")
        del self.node.fs[path]
        self.node.log.append(("rmdir", path, ""))

    def remove(self, path):
        if path not in self.node.fs:
            raise FileNotFoundError(path)
        del self.node.fs[path]
        self.node.log.append(("remove", path, ""))

    def posix_rename(self, old, new):
        self.node.fs[new] = self.node.fs.pop(old)
        self.node.log.append(("rename", old, new))

    rename = posix_rename


class Conn:
    """The session's SSH connection: the few shell commands MasterSession runs."""

    def __init__(self, node):
        self.node, self._sftp = node, SFTP(node)

    def sftp(self):
        return self._sftp

    def hashes(self, folder):
        """sha256sum of every file below the folder, as `find -exec sha256sum` prints them."""
        return "".join(f"{hashlib.sha256(data).hexdigest()}  ./{path[len(folder) + 1:]}\n"
                       for path, (kind, _, data) in sorted(self.node.fs.items())
                       if kind == "file" and path.startswith(folder + "/") and "/.lapinfra-new-" not in path)

    def run(self, command, **kw):
        if command.startswith(f"echo '{FOLDER_MARK}"):     # facts.read_files: each folder's hashes, changing nothing
            out = ""
            for part in command.split(f"echo '{FOLDER_MARK}")[1:]:
                folder = part.split("'", 1)[0]
                out += FOLDER_MARK + folder + "\n"
                out += self.hashes(folder) if self.node.fs.get(folder, ("",))[0] == "dir" else ""
            return SimpleNamespace(stdout=out, ok=True, failed=False)
        if command.startswith("mkdir -p "):
            self.node.mkdirs(command[len("mkdir -p "):])
            return SimpleNamespace(stdout="", ok=True, failed=False)
        if command.startswith("mv -f "):
            old, new = command.split()[2:]
            self.node.fs[new] = self.node.fs.pop(old)
            return SimpleNamespace(stdout="", ok=True, failed=False)
        raise AssertionError(f"unexpected command {command!r}")


@pytest.fixture
def node():
    return Node()


@pytest.fixture
def session(node):
    s = MasterSession(SimpleNamespace(env=None))
    s.conn = Conn(node)
    return s


def sync(s, files: dict[str, bytes], folder: str, mode: int = 0o644) -> list[str]:
    """What a deploy does to one folder: its facts, the decision, the executor; the paths changed."""
    actions = decisions.file_actions(folder, files, facts.read_files(s, [folder])[folder], mode)
    return [a.path for a in Executor(Recorder(), s).apply(actions)]


def test_put_writes_no_byte_another_account_could_read_and_replaces_the_file_at_once(node, session):
    node.mkdirs("/data/lapinfra")
    node.fs["/data/lapinfra/release.json"] = ("file", 0o644, b"old")
    session.put("/data/lapinfra/release.json", b'{"release": "abc"}')
    assert node.exposed == []
    assert node.fs["/data/lapinfra/release.json"] == ("file", 0o600, b'{"release": "abc"}')
    renames = [entry for entry in node.log if entry[0] == "rename"]
    assert [r[2] for r in renames] == ["/data/lapinfra/release.json"]     # written aside, then one rename
    assert not [p for p in node.fs if ".lapinfra-new-" in p]              # nothing left beside it


def test_sync_gives_each_secret_its_mode_before_its_first_byte(node, session):
    files = {"tls.key": b"a made-up TLS key\nsecret\n", "sub/htpasswd": b"user:$2b$10$hash\n"}
    changed = sync(session, files, "/data/secrets/registry", mode=0o600)
    assert sorted(changed) == ["sub/htpasswd", "tls.key"]
    assert node.exposed == []
    for rel, data in files.items():
        assert node.fs[f"/data/secrets/registry/{rel}"] == ("file", 0o600, data)
    for path in {entry[1] for entry in node.log if entry[0] == "write"}:
        ops = [entry[0] for entry in node.log if entry[1] == path]
        assert ops.index("fchmod") < ops.index("write"), (path, ops)
    assert not [p for p in node.fs if ".lapinfra-new-" in p]


def test_sync_replaces_a_changed_file_keeps_an_unchanged_one_and_removes_an_extra_one(node, session):
    sync(session, {"a": b"1", "b": b"2", "c": b"3"}, "/data/environment")
    node.log.clear()
    changed = sync(session, {"a": b"1", "b": b"two"}, "/data/environment")
    assert changed == ["b", "c"]
    assert node.fs["/data/environment/b"] == ("file", 0o644, b"two")
    assert "/data/environment/c" not in node.fs
    assert not [entry for entry in node.log if entry[1] == "/data/environment/a"]
    assert node.exposed == []       # 0644 is the mode asked for here: readable once it is in place only


def test_a_failed_write_leaves_the_old_file_and_nothing_beside_it(node, session):
    node.mkdirs("/data/lapinfra")
    node.fs["/data/lapinfra/release.json"] = ("file", 0o600, b"old")

    def broken(self, data):
        raise OSError("disk full")

    File.write, kept = broken, File.write
    try:
        with pytest.raises(OSError, match="disk full"):
            session.put("/data/lapinfra/release.json", b"new")
    finally:
        File.write = kept
    assert node.fs["/data/lapinfra/release.json"] == ("file", 0o600, b"old")
    assert sorted(p for p in node.fs if p.startswith("/data/lapinfra")) == ["/data/lapinfra", "/data/lapinfra/release.json"]


def test_the_hashes_of_every_folder_come_in_one_listing_split_by_folder():
    listing = (f"{FOLDER_MARK}/data/environment/dns\n"
               "aaaa  ./named.conf\nbbbb  ./zones/db internal\n"
               f"{FOLDER_MARK}/data/secrets/git\n"           # a folder not there yet: nothing listed
               f"{FOLDER_MARK}/data/secrets/registry\n"
               "cccc  ./tls.key\n")
    folders = ["/data/environment/dns", "/data/secrets/git", "/data/secrets/registry"]
    assert facts.split_listing(listing, folders) == {
        "/data/environment/dns": {"named.conf": "aaaa", "zones/db internal": "bbbb"},
        "/data/secrets/git": {},
        "/data/secrets/registry": {"tls.key": "cccc"},
    }
    assert facts.split_listing("", folders) == {folder: {} for folder in folders}
