"""The release id of the working tree: the commit, with a suffix when the tree is dirty."""
from __future__ import annotations

import hashlib
from pathlib import Path

import git


def release_id(root: Path) -> str:
    """``<commit12>`` for a clean tree; ``<commit12>-dirty-<hash8>`` otherwise.

    The dirty suffix hashes the diff against HEAD and the untracked files, so two
    different dirty trees never share a tag, and never a clean commit's tag.
    """
    try:
        repo = git.Repo(root)
        head = repo.head.commit.hexsha[:12]
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return "nocommit-" + _tree_hash(root, [])[:8]
    if not repo.is_dirty(untracked_files=True):
        return head
    h = hashlib.sha256(repo.git.diff("HEAD", binary=True).encode())
    for path in sorted(repo.untracked_files):
        h.update(path.encode())
        full = Path(root, path)
        if full.is_file():
            h.update(full.read_bytes())
    return f"{head}-dirty-{h.hexdigest()[:8]}"


def _tree_hash(root: Path, _ignored) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and ".git" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
    return h.hexdigest()
