"""The image graph: FROM order, content hashes that move with content."""
import pytest

from lapinfra.errors import LapinfraError
from lapinfra.gitinfo import release_id
from lapinfra.images import ImageGraph, parse_from


def _image(root, name, dockerfile, **files):
    d = root / "images" / name
    d.mkdir(parents=True)
    (d / "Dockerfile").write_text(dockerfile)
    for fname, text in files.items():
        (d / fname).write_text(text)


@pytest.fixture
def graph_root(tmp_path):
    _image(tmp_path, "app", "FROM infra/lib\nCOPY x /x\n", x="1")
    _image(tmp_path, "lib", "FROM infra/base\n")
    _image(tmp_path, "other", "FROM infra/base:latest AS build\nFROM build\n")
    return tmp_path


def test_parse_from_ignores_stage_aliases():
    assert parse_from("FROM infra/base AS b\nRUN x\nFROM b\nFROM --platform=linux/amd64 infra/lib\n") == ("infra/base", "infra/lib")


def test_build_order_follows_from_lines(graph_root):
    g = ImageGraph.discover(graph_root, "infra/base")
    assert g.order() == [["lib", "other"], ["app"]]


def test_hash_moves_with_context_parent_and_base(graph_root):
    h = lambda: ImageGraph.discover(graph_root, "infra/base").hash("app", "sha256:base1")  # noqa: E731
    first = h()
    assert h() == first
    (graph_root / "images/lib/Dockerfile").write_text("FROM infra/base\nRUN true\n")
    second = h()
    assert second != first, "a parent's change reaches its children"
    assert ImageGraph.discover(graph_root, "infra/base").hash("app", "sha256:base2") != second
    (graph_root / "images/app/x").write_text("2")
    assert h() != second


def test_extra_ca_bundle_is_a_build_input(graph_root):
    plain = ImageGraph.discover(graph_root, "infra/base").hash("lib", "b")
    assert ImageGraph.discover(graph_root, "infra/base", extra_ca=b"PEM").hash("lib", "b") != plain


def test_unknown_infra_parent_and_cycles_are_errors(tmp_path):
    _image(tmp_path, "a", "FROM infra/nothere\n")
    with pytest.raises(LapinfraError, match="images/a/Dockerfile: FROM infra/nothere"):
        ImageGraph.discover(tmp_path, "infra/base")
    (tmp_path / "images/a/Dockerfile").write_text("FROM infra/b\n")
    _image(tmp_path, "b", "FROM infra/a\n")
    with pytest.raises(LapinfraError, match="cycle"):
        ImageGraph.discover(tmp_path, "infra/base")


def test_project_images_all_build_on_the_base():
    from tests.conftest import ROOT

    g = ImageGraph.discover(ROOT, "infra/base")
    assert {"dns", "registry", "environment", "node"} <= set(g.specs)
    assert not g.specs["node"].pushed and g.specs["dns"].pushed


def test_release_id_is_the_commit_or_a_distinct_dirty_tag(tmp_path):
    import git

    repo = git.Repo.init(tmp_path)
    (tmp_path / "f").write_text("1")
    repo.index.add(["f"])
    repo.index.commit("c", author=git.Actor("a", "a@b"), committer=git.Actor("a", "a@b"))
    clean = release_id(tmp_path)
    assert clean == repo.head.commit.hexsha[:12]
    (tmp_path / "f").write_text("2")
    dirty = release_id(tmp_path)
    assert dirty.startswith(clean + "-dirty-")
    (tmp_path / "f").write_text("3")
    assert release_id(tmp_path) not in (dirty, clean)


# ---- what a push sent -------------------------------------------------------------------------

def test_a_push_counts_the_layers_it_sent_and_those_the_registry_had():
    from lapinfra.registry import layer_counts

    last = {"a1": "Pushed", "b2": "Layer already exists", "c3": "Mounted from infra/r1/sampleapp", "d4": "Pushed"}
    assert layer_counts(last) == (2, 4)
    assert layer_counts({"a1": "Layer already exists", "b2": "Layer already exists"}) == (0, 2)
    # progress lines that never finished (a push cut short) count for nothing
    assert layer_counts({"a1": "Pushing", "b2": "Preparing"}) == (0, 0)
