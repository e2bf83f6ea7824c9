"""Mirrors from the workstation's own apt sources: no archive host written into the tree."""
import os

import pytest

from lapinfra import aptsources, base, config, render
from lapinfra.errors import LapinfraError
from lapinfra.project import Project
from lapinfra.report import Recorder
from tests.conftest import ROOT

DEB822 = """\
Types: deb
# a comment inside a paragraph
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/ubuntu
Suites: noble
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb-src http://src-only.example/ubuntu noble main
deb [arch=amd64 signed-by=/usr/share/keyrings/ubuntu.gpg] https://mirror.example/pub/ubuntu noble main universe
deb cdrom:[Debian 12]/ bookworm main
"""


def test_deb822_paragraphs_fields_and_enabled():
    sources = aptsources.parse_deb822(DEB822)
    assert [s.uris for s in sources] == [("http://mirror.example/debian/",), ("http://mirror.example/debian-security",)]
    assert sources[0].suites == ("bookworm", "bookworm-updates") and sources[1].types == ("deb", "deb-src")


def test_deb822_continuation_lines_carry_several_uris():
    text = "Types: deb\nURIs: http://one.example/debian\n http://two.example/debian\nSuites: bookworm\n"
    assert aptsources.parse_deb822(text)[0].uris == ("http://one.example/debian", "http://two.example/debian")


def test_one_line_style_with_options_and_comments():
    sources = aptsources.parse_one_line(ONE_LINE)
    assert [(s.types, s.uris, s.suites) for s in sources] == [
        (("deb-src",), ("http://src-only.example/ubuntu",), ("noble",)),
        (("deb",), ("https://mirror.example/pub/ubuntu",), ("noble",)),
        (("deb",), ("cdrom:[Debian",), ("12]/",)),   # not http(s): never chosen
    ]


def test_an_archive_is_known_by_the_end_of_its_path():
    sources = aptsources.parse_deb822(DEB822) + aptsources.parse_one_line(ONE_LINE)
    assert aptsources.archive_uri(sources, "debian") == "http://mirror.example/debian"         # not debian-security
    assert aptsources.archive_uri(sources, "ubuntu") == "https://mirror.example/pub/ubuntu"    # not the deb-src, nor disabled
    assert aptsources.archive_uri(aptsources.parse_deb822(DEB822), "ubuntu") == ""


@pytest.fixture
def apt_dir(tmp_path):
    folder = tmp_path / "apt"
    (folder / "sources.list.d").mkdir(parents=True)
    (folder / "sources.list.d/debian.sources").write_text(DEB822)
    (folder / "sources.list").write_text(ONE_LINE)
    return folder


def test_read_takes_both_formats(apt_dir):
    (apt_dir / "sources.list.d/folder.sources").mkdir()     # unreadable as a file: skipped
    uris = [u for s in aptsources.read(apt_dir) for u in s.uris]
    assert uris.index("http://mirror.example/debian/") < uris.index("https://mirror.example/pub/ubuntu")


def test_unset_mirrors_default_to_the_workstations_sources(tree, apt_dir):
    env = config.load(tree, "test", apt_dir=apt_dir)
    assert env.base_image.mirror == "http://mirror.example/debian"
    assert env.cache.debian_upstream == "http://mirror.example/debian"
    assert env.cache.ubuntu_upstream == "https://mirror.example/pub/ubuntu"


def test_the_environment_overrides_the_workstation(tree, apt_dir):
    env_file = tree / "environments/test/env.yml"
    env_file.write_text(env_file.read_text() + "base_image:\n  mirror: http://company.example/debian\n"
                        "cache:\n  ubuntu_upstream: http://company.example/ubuntu\n")
    env = config.load(tree, "test", apt_dir=apt_dir)
    assert env.base_image.mirror == "http://company.example/debian"
    assert env.cache.ubuntu_upstream == "http://company.example/ubuntu"
    assert env.cache.debian_upstream == "http://mirror.example/debian"


def test_without_sources_the_mirrors_stay_unset_and_debootstrap_says_what_to_set(tree, tmp_path):
    env = config.load(tree, "test", apt_dir=tmp_path / "nothing")
    assert (env.base_image.mirror, env.cache.debian_upstream, env.cache.ubuntu_upstream) == ("", "", "")
    with pytest.raises(LapinfraError, match="set base_image.mirror in environments/base.yml"):
        base._debootstrap(None, env.base_image)


def test_the_cache_upstreams_are_rendered_for_the_cache(tree, apt_dir, monkeypatch):
    monkeypatch.setattr(config, "APT_DIR", apt_dir)
    project = Project("test", root=tree, reporter=Recorder())
    project.secrets.ensure()
    files = render.render_all(project).files
    assert files[project.build_dir / "rendered/cache/backends_debian"] == "http://mirror.example/debian/\n"
    assert files[project.build_dir / "rendered/cache/backends_ubuntu"] == "https://mirror.example/pub/ubuntu/\n"
    monkeypatch.setattr(config, "APT_DIR", tree / "no-apt")
    project = Project("test", root=tree, reporter=Recorder())
    files = render.render_all(project).files
    assert files[project.build_dir / "rendered/cache/backends_debian"] == ""    # the entrypoint: the package's default


def test_no_archive_host_is_written_into_the_tree():
    hosts = ["deb" + ".debian.org", "archive" + ".ubuntu", "security" + ".debian"]
    skip = {".git", ".venv", "build", "secrets", "__pycache__", ".pytest_cache"}
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = os.path.join(folder, name)
            try:
                text = open(path, encoding="utf-8").read()
            except (UnicodeDecodeError, OSError):
                continue
            found += [f"{os.path.relpath(path, ROOT)}: {h}" for h in hosts if h in text]
    assert found == []
