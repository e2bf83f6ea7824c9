"""Rendering: strict templates, a zone that holds every record, a stable serial."""
import subprocess

import pytest

from lapinfra import render
from lapinfra.errors import LapinfraError
from lapinfra.project import Project
from lapinfra.report import Recorder


def test_zone_holds_every_record_of_the_environment(project):
    out = render.render_all(project)
    zone = out.files[project.build_dir / "rendered/dns/db.zone"]
    render.check_zone(zone, "internal", project.env.zone_records)  # raises on any gap


def test_an_empty_zone_fails_the_check(project):
    with pytest.raises(LapinfraError, match="does not parse|lacks"):
        render.check_zone("", "internal", project.env.zone_records)


def test_a_zone_template_that_loses_records_fails(project, tree):
    """The original's defect: a template change that renders a zone without its records."""
    tpl = tree / "images/dns/templates/db.zone.j2"
    text = tpl.read_text()
    assert "in zone_records" in text
    tpl.write_text(text.replace("in zone_records", "in {}"))
    out = render.render_all(project)
    with pytest.raises(LapinfraError):
        render.check_zone(out.files[project.build_dir / "rendered/dns/db.zone"], "internal", project.env.zone_records)


def test_named_conf_is_authoritative_only(project):
    conf = render.render_all(project).files[project.build_dir / "rendered/dns/named.conf"]
    assert "recursion no;" in conf
    statements = [line.split("//")[0] for line in conf.splitlines()]
    assert not any("forward" in line or "type hint" in line for line in statements)
    assert 'key "lapinfra-test"' in conf


def test_missing_variable_names_the_template(project, tree):
    (tree / "images/registry/templates/extra.yml.j2").write_text("x: {{ no_such_thing }}\n")
    with pytest.raises(LapinfraError, match=r"images/registry/templates/extra.yml.j2: 'no_such_thing' is undefined"):
        render.render_all(project)


def test_rerender_changes_nothing_and_keeps_the_serial(project):
    first = render.render_all(project)
    second = render.render_all(project)
    assert second.changed == [] and second.files == first.files


def test_a_config_change_moves_the_serial_up(project, tree):
    first = render.render_all(project).files[project.build_dir / "rendered/dns/db.zone"]
    nodes = tree / "nodes/test.yml"
    nodes.write_text(nodes.read_text().replace("172.28.10.20", "172.28.10.21"))
    changed = Project("test", root=tree, reporter=Recorder())
    second = render.render_all(changed).files[changed.build_dir / "rendered/dns/db.zone"]
    serial = lambda z: int(z.split("SOA")[1].split("(")[1].split()[0])  # noqa: E731
    assert serial(second) > serial(first)
    assert "172.28.10.21" in second


def test_vagrantfile_is_valid_ruby_for_docker_and_virtualbox(tree):
    for env in ("test", "prod"):
        p = Project(env, root=tree, reporter=Recorder())
        p.secrets.ensure()
        out = render.render_all(p)
        vagrantfile = p.build_dir / "Vagrantfile"
        assert vagrantfile in out.files
        run = subprocess.run(["ruby", "-c", str(vagrantfile)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        for node in p.env.nodes:
            assert node.dynamic or str(node.ip) in out.files[vagrantfile]
        # the master's admin sshd is moved off port 22, which is the git server's
        text = out.files[vagrantfile]
        if env == "test":
            assert '"LAPINFRA_SSH_PORT=2222"' in text and '"LAPINFRA_SSH_PORT=22"' in text
        else:
            assert "ListenAddress 0.0.0.0:2222" in text
