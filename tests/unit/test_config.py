import pytest

from lapinfra import config
from lapinfra.errors import ConfigError


def test_shipped_environments_load_with_every_seed_name(tree):
    for env in ("test", "staging", "prod"):
        cfg = config.load(tree, env)
        names = cfg.dns_records
        for short in ("ns", "git", "trac", "cd", "ubuntu.cache", "docker", "maven", "artifact", "backup"):
            assert f"{short}.internal" in names
        assert names["master.node.internal"] == str(cfg.master.ip)
        assert names["backup.internal"] == str(cfg.node("backup").ip)


def test_prod_is_the_seed_example_and_test_is_local():
    from tests.conftest import ROOT

    assert str(config.load(ROOT, "prod").master.ip) == "192.168.0.10"
    test = config.load(ROOT, "test")
    assert test.provider == "docker" and test.master.ip in test.network.subnet


def _expect(tree, env, file, key, fragment):
    with pytest.raises(ConfigError) as err:
        config.load(tree, env)
    assert err.value.file == file
    assert err.value.key == key
    assert fragment in str(err.value)
    return err.value


def test_unknown_environment_lists_known_ones(tree):
    err = _expect(tree, "nope", "environments", "--env", "unknown environment")
    assert "prod, staging, test" in str(err)


def test_malformed_yaml_names_file_and_line(tree):
    (tree / "environments/test/env.yml").write_text("provider: docker\nnetwork: [unclosed\n")
    err = _expect(tree, "test", "environments/test/env.yml", "line 3", "malformed YAML")
    assert str(err).startswith("environments/test/env.yml: line 3: malformed YAML")


def test_unknown_key_is_rejected_with_its_path(tree):
    (tree / "environments/test/env.yml").write_text((tree / "environments/test/env.yml").read_text() + "registry:\n  prot: 5000\n")
    _expect(tree, "test", "environments/test/env.yml", "registry.prot", "unknown key")


def test_bad_address_names_node_file_and_index(tree):
    text = (tree / "nodes/test.yml").read_text().replace("172.28.10.20", "172.28.10.300")
    (tree / "nodes/test.yml").write_text(text)
    _expect(tree, "test", "nodes/test.yml", "nodes[1].ip", "IPv4")


def test_wrong_type_is_rejected(tree):
    (tree / "environments/test/env.yml").write_text((tree / "environments/test/env.yml").read_text() + "registry:\n  port: many\n")
    _expect(tree, "test", "environments/test/env.yml", "registry.port", "integer")


def test_duplicate_address_and_name(tree):
    text = (tree / "nodes/test.yml").read_text()
    (tree / "nodes/test.yml").write_text(text.replace("172.28.10.20", "172.28.10.10"))
    _expect(tree, "test", "nodes/test.yml", "nodes[1].ip", "duplicate ip")
    (tree / "nodes/test.yml").write_text(text.replace("name: backup", "name: master"))
    _expect(tree, "test", "nodes/test.yml", "nodes[1].name", "duplicate name")


def test_address_outside_the_network(tree):
    (tree / "nodes/test.yml").write_text((tree / "nodes/test.yml").read_text().replace("172.28.10.20", "172.28.11.20"))
    _expect(tree, "test", "nodes/test.yml", "nodes[1].ip", "not a usable address")


def test_missing_required_key(tree):
    (tree / "environments/test/env.yml").write_text("network:\n  name: x1\n  subnet: 172.28.10.0/24\n")
    _expect(tree, "test", "environments/test/env.yml", "provider", "Field required")   # where it belongs


def test_base_defaults_are_overridden_key_by_key(tree):
    (tree / "environments/test/env.yml").write_text((tree / "environments/test/env.yml").read_text() + "registry:\n  port: 5443\n")
    cfg = config.load(tree, "test")
    assert cfg.registry.port == 5443 and cfg.registry.user == "infra"


def test_git_owns_port_22_on_the_master(tree):
    cfg = config.load(tree, "test")
    assert cfg.master.admin_port == 2222 and cfg.master.ssh_host == f"[{cfg.master.ip}]:2222"
    assert cfg.node("backup").admin_port == 22 and cfg.node("backup").ssh_host == str(cfg.node("backup").ip)
    text = (tree / "nodes/test.yml").read_text().replace("ip: 172.28.10.10", "ip: 172.28.10.10\n    ssh_port: 22")
    (tree / "nodes/test.yml").write_text(text)
    _expect(tree, "test", "nodes/test.yml", "nodes[0].ssh_port", "belongs to the git server")
