"""The workstation's apt sources: where its Debian and Ubuntu archives are.

A company's machines already point at its mirror, so the base image's debootstrap
mirror (`base_image.mirror`) and the apt cache's upstreams (`cache.*_upstream`)
default to the archives the workstation itself uses, and no registry host is
written into the tree.

Both formats apt reads are parsed by pure functions:

- deb822, ``/etc/apt/sources.list.d/*.sources``: paragraphs of ``Field: value``
  (``Types: deb``, ``URIs: http://mirror.example/debian``, ``Suites: ...``,
  ``Enabled: no`` skips one), continuation lines start with a space;
- one-line style, ``/etc/apt/sources.list`` and ``sources.list.d/*.list``:
  ``deb [options] URI suite [component...]``.

An archive is recognised by the last part of its URI's path: ``/debian`` is a Debian
archive, ``/ubuntu`` an Ubuntu one (``/debian-security`` is neither).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]


def parse_deb822(text: str) -> list[Source]:
    """The enabled sources of one deb822 .sources file."""
    out = []
    for paragraph in _paragraphs(text):
        if paragraph.get("enabled", "yes").lower() == "no":
            continue
        out.append(Source(tuple(paragraph.get("types", "").split()), tuple(paragraph.get("uris", "").split()),
                          tuple(paragraph.get("suites", "").split())))
    return out


def _paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = [{}]
    key = None
    for line in text.splitlines():
        if not line.strip():
            if paragraphs[-1]:
                paragraphs.append({})
            key = None
        elif line.lstrip().startswith("#"):
            continue
        elif line[0] in " \t" and key is not None:
            paragraphs[-1][key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            paragraphs[-1][key] = value.strip()
    return [p for p in paragraphs if p]


def parse_one_line(text: str) -> list[Source]:
    """The sources of one sources.list file (deb and deb-src lines; comments skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind, rest = words[0], words[1:]
        if kind not in ("deb", "deb-src"):
            continue
        if rest and rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            out.append(Source((kind,), (rest[0],), (rest[1],)))
    return out


def archive_uri(sources: list[Source], archive: str) -> str:
    """The first binary (deb) source's http(s) URI whose path ends in ``/<archive>``; "" if none."""
    for source in sources:
        if "deb" not in source.types:
            continue
        for uri in source.uris:
            uri = uri.rstrip("/")
            if uri.startswith(("http://", "https://")) and uri.rsplit("/", 1)[-1] == archive and uri.count("/") >= 3:
                return uri
    return ""


def read(apt_dir: Path) -> list[Source]:
    """Every source of the workstation: sources.list.d/*.sources, then sources.list, then *.list.
    Unreadable files are skipped (they only supply defaults)."""
    apt_dir = Path(apt_dir)
    found: list[Source] = []
    parts = [(p, parse_deb822) for p in sorted(apt_dir.glob("sources.list.d/*.sources"))]
    parts += [(apt_dir / "sources.list", parse_one_line)]
    parts += [(p, parse_one_line) for p in sorted(apt_dir.glob("sources.list.d/*.list"))]
    for path, parse in parts:
        try:
            if path.is_file() and path.stat().st_size < 1 << 20:
                found += parse(path.read_text(errors="replace"))
        except OSError:
            continue
    return found
