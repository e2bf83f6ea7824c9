"""`invoke config.check` you can trust: every category of defect the check refuses, with
the file and line that wrote it, all at once, fast, and before anything is generated."""
import typing

import pytest
import yaml
from pydantic import BaseModel

from lapinfra import config, services, swarm
from lapinfra.errors import ConfigError

ENV = "environments/test/env.yml"
NODES = "nodes/test.yml"


def _refused(tree, env="test") -> ConfigError:
    with pytest.raises(ConfigError) as err:
        config.load(tree, env)
    return err.value


def _append(tree, rel, text):
    (tree / rel).write_text((tree / rel).read_text() + text)


def _replace(tree, rel, old, new):
    text = (tree / rel).read_text()
    assert old in text
    (tree / rel).write_text(text.replace(old, new))


def _line_of(tree, rel, fragment) -> int:
    return next(i for i, line in enumerate((tree / rel).read_text().splitlines(), 1) if fragment in line)


# ---- strict types ----------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [("true", "True"), ("'5000'", "'5000'"), ("5000.0", "5000.0"), ("[5000]", "[5000]")])
def test_a_port_is_an_integer_and_nothing_else(tree, value, shown):
    _append(tree, ENV, f"registry:\n  port: {value}\n")
    err = _refused(tree)
    assert (err.file, err.key, err.line) == (ENV, "registry.port", _line_of(tree, ENV, "port:"))
    assert "valid integer" in err.message and shown in err.message


@pytest.mark.parametrize("key, value", [("protected", "'yes'"), ("protected", "1"), ("backup:\n  interval_minutes", "true")])
def test_no_coercion_of_booleans_and_numbers(tree, key, value):
    _append(tree, ENV, f"{key}: {value}\n")
    assert _refused(tree).file == ENV


def test_an_address_is_written_as_a_string(tree):
    _append(tree, NODES, "  - {name: worker3, role: worker, ip: 3}\n")
    err = _refused(tree)
    assert (err.file, err.key) == (NODES, "nodes[4].ip") and "written as a string" in err.message


# ---- names by their grammar ---------------------------------------------------------

@pytest.mark.parametrize("name", ["''", "'a;b'", "'-app'", "App", "'a.b'", "x" * 64])
def test_lb_name_is_one_dns_label(tree, name):
    _append(tree, ENV, f"lb:\n  name: {name}\n")
    err = _refused(tree)
    assert (err.file, err.key) == (ENV, "lb.name") and "DNS label" in err.message


@pytest.mark.parametrize("domain, fragment", [
    ("a" * 70, "not a DNS name"),                      # one label over 63 characters
    ("'internal$(touch x)'", "not a DNS name"),
    ("'corp..example'", "not a DNS name"),
    ("Corp.Example", "not a DNS name"),
    (".".join(["d" * 60] * 4), "at most 253"),         # every label fine, the names too long
])
def test_domain_is_a_dns_name_whose_names_fit(tree, domain, fragment):
    _append(tree, ENV, f"domain: {domain}\n")
    err = _refused(tree)
    assert (err.file, err.key) == (ENV, "domain") and fragment in err.message


def _string_fields(model=config.Environment, path=()):
    """(key path, annotation, owning model, field name) of every string in the model; a
    list is entered at [0], a dict of models at a sample key."""
    for name, field in model.model_fields.items():
        yield from _strings_in(field.annotation, field.metadata, path + (name,), model, name)


def _strings_in(annotation, metadata, path, model, name):
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _strings_in(args[0], list(metadata) + list(args[1:]), path, model, name)
    elif annotation is str:
        yield path, metadata, model, name
    elif origin is typing.Literal:
        return
    elif origin is list:
        yield from _strings_in(args[0], [], path + (0,), model, name)
    elif origin is dict:
        yield from _strings_in(args[0], [], path + ("<key>",), model, name)
        yield from _strings_in(args[1], [], path + ("hello",), model, name)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _string_fields(annotation, path)
    elif args:   # X | None
        for arg in args:
            if arg is not type(None):
                yield from _strings_in(arg, metadata, path, model, name)


def _has_grammar(metadata, model, name) -> bool:
    patterns = [getattr(m, "pattern", None) for m in metadata]
    for m in metadata:   # Field(...) inside Annotated keeps its constraints in .metadata
        patterns += [getattr(x, "pattern", None) for x in getattr(m, "metadata", [])]
    validators = model.__pydantic_decorators__.field_validators.values()
    return any(patterns) or any(name in v.info.fields for v in validators)


def test_every_string_of_the_model_has_a_grammar():
    fields = list(_string_fields())
    assert len(fields) >= 20    # the walk finds them (a walk that finds nothing proves nothing)
    missing = [config.format_key(p) for p, metadata, model, name in fields if not _has_grammar(metadata, model, name)]
    assert missing == []


HOSTILE = ["x$(touch pwned)", "x`touch pwned`", "a\nb", "ok\n", 'x"y', "x\\y"]   # ok\n: Python's $ would let it pass
NOT_FOR_SHELLS = {("apps", "hello", "health", "cmd", 0): ["a\nb", "ok\n", "a\x00b", "\x1b[2J"]}   # exec'ed as a list, never by a shell


def _inject(tree, path, value) -> str:
    """Write ``value`` at key path ``path`` into the file it belongs in; return that file."""
    if path[0] == "nodes":
        rel, inner = NODES, path
    elif path[0] == "apps":
        rel, inner = "apps/hello/app.yml", path[2:]
    else:
        rel, inner = ENV, path
    data = yaml.safe_load((tree / rel).read_text()) or {}
    node = data
    for part, following in zip(inner, inner[1:]):
        node = node[part] if isinstance(node, list) else node.setdefault(part, [] if isinstance(following, int) else {})
    if inner[-1] == "<key>":
        node[value] = "master"            # dns.names: a name -> the role serving it
    elif isinstance(inner[-1], int):
        node[:] = [value]
    else:
        node[inner[-1]] = value
    (tree / rel).write_text(yaml.safe_dump(data))
    return rel


@pytest.mark.parametrize("path", [p for p, *_ in _string_fields() if p[0] != "name" and p[:2] != ("apps", "<key>")],
                         ids=lambda p: config.format_key(p))
def test_hostile_values_are_refused_with_file_and_key(tree, path):
    originals = {rel: (tree / rel).read_text() for rel in (ENV, NODES, "apps/hello/app.yml")}
    key = config.format_key(path)
    for value in NOT_FOR_SHELLS.get(path, HOSTILE):
        rel = _inject(tree, path, value)
        err = _refused(tree)
        assert err.file == rel, (value, str(err))
        if "<key>" in path:
            assert err.key.startswith(key.split(".<key>")[0]), (value, str(err))
        else:
            assert err.key == key, (value, str(err))
        for name, text in originals.items():
            (tree / name).write_text(text)


# ---- addresses by the provider's rules ----------------------------------------------

@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1", "224.0.0.5", "169.254.1.1", "255.255.255.255", "240.0.0.1"])
def test_a_vm_address_is_usable_unicast(tree, address):
    _replace(tree, "nodes/prod.yml", "192.168.0.10", address)
    err = _refused(tree, "prod")
    assert (err.file, err.key, err.line) == ("nodes/prod.yml", "nodes[0].ip", _line_of(tree, "nodes/prod.yml", f"ip: {address}"))
    assert "usable unicast" in err.message


@pytest.mark.parametrize("address", ["172.28.10.0", "172.28.10.1", "172.28.10.255"])
def test_a_container_address_is_a_host_of_its_subnet_but_the_gateway(tree, address):
    _replace(tree, NODES, "172.28.10.20", address)
    assert _refused(tree).key == "nodes[1].ip"


def test_a_subnet_must_not_overlap_the_infrastructure_networks(tree):
    _replace(tree, ENV, "172.28.10.0/24", "172.31.0.0/16")
    _replace(tree, NODES, "172.28.10.", "172.31.10.")
    err = _refused(tree)
    assert (err.file, err.key) == (ENV, "network.subnet") and "infra network" in err.message


def test_more_dynamic_workers_than_the_dynamic_range_holds(tree):
    _append(tree, ENV, "  dynamic: 172.28.10.248/30\n")
    _append(tree, NODES, "".join(f"  - {{name: extra{i}, role: worker}}\n" for i in range(3)))
    err = _refused(tree)
    assert err.file == NODES and "dynamic range 172.28.10.248/30 has 2" in str(err)


def test_the_reserved_networks_are_the_ones_services_and_the_swarm_use():
    assert set(config.RESERVED_NETWORKS) == {services.NETWORK_SUBNET, config.ipaddress.IPv4Network(swarm.ADDRESS_POOL)}


# ---- clashes ------------------------------------------------------------------------------

@pytest.mark.parametrize("port, owner", [(80, "the HTTP proxy"), (53, "DNS"), (2222, "admin sshd"), (22, "the git server"), (3124, "the apt cache")])
def test_the_registry_port_clashes_with_what_the_master_serves(tree, port, owner):
    _append(tree, ENV, f"registry:\n  port: {port}\n")
    err = _refused(tree)
    assert (err.file, err.key) == (ENV, "registry.port") and owner in err.message


def test_the_master_sshd_clashes_with_the_registry(tree):
    _replace(tree, NODES, "ip: 172.28.10.10", "ip: 172.28.10.10\n    ssh_port: 5000")
    err = _refused(tree)
    assert (err.file, err.key) == (NODES, "nodes[0].ssh_port") and "the registry" in err.message


@pytest.mark.parametrize("name, what", [("trac", "dns.names"), ("node", "dynamic zone"), ("proxy", "infrastructure container")])
def test_lb_name_clashes_with_a_configured_name(tree, name, what):
    _append(tree, ENV, f"lb:\n  name: {name}\n")
    err = _refused(tree)
    assert (err.file, err.key) == (ENV, "lb.name") and what in err.message


def test_an_app_named_like_the_load_balancer(tree):
    (tree / "apps/app").mkdir()
    (tree / "apps/app/app.yml").write_text((tree / "apps/hello/app.yml").read_text())
    err = _refused(tree)
    assert (err.file, err.key) == ("apps/app/app.yml", "apps.app")


def test_service_names_are_the_containers_of_services():
    env = config.load(config.Path(__file__).resolve().parents[2], "test")
    assert {s.name for s in services.services(env)} - {f"{env.lb.name}{i}" for i in range(1, 9)} == set(config.SERVICE_NAMES)


# ---- references -----------------------------------------------------------------------

@pytest.mark.parametrize("value, fragment", [("qa", "unknown environment 'qa'; known environments: bench, prod, staging, test"),
                                             ("test", "promoted from itself")])
def test_promoted_from_names_another_known_environment(tree, value, fragment):
    _append(tree, ENV, f"promoted_from: {value}\n")
    err = _refused(tree)
    assert (err.file, err.key, err.line) == (ENV, "promoted_from", _line_of(tree, ENV, "promoted_from")) and fragment in err.message


def test_cd_repository_is_one_of_the_repositories(tree):
    _append(tree, ENV, "cd:\n  repository: nope\n")
    assert _refused(tree).key == "cd.repository"


def test_a_repository_listed_twice(tree):
    _append(tree, ENV, "git:\n  repositories: [infra, infra]\n")
    assert "listed twice" in str(_refused(tree))


# ---- files --------------------------------------------------------------------------------

def test_a_key_given_twice_names_both_lines(tree):
    _append(tree, ENV, "provider: virtualbox\n")
    err = _refused(tree)
    last = len((tree / ENV).read_text().splitlines())
    assert (err.file, err.key) == (ENV, "provider")
    assert f"given twice, on line {_line_of(tree, ENV, 'provider: docker')} and line {last}" in err.message


def test_a_nested_key_given_twice(tree):
    _replace(tree, NODES, "    ip: 172.28.10.20", "    ip: 172.28.10.20\n    ip: 172.28.10.21")
    err = _refused(tree)
    assert (err.file, err.key) == (NODES, "nodes[1].ip") and "given twice" in err.message


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b"provider: docker\ndescription: caf\xe9\n"), "line 2: not UTF-8 text"),
    (lambda p: (p.unlink(), p.mkdir()), "is a folder"),
    (lambda p: p.write_text("provider: docker\n" + "#" * (1 << 20)), "at most 1048576 bytes"),
    (lambda p: p.write_text("provider: docker\n---\nprovider: docker\n"), "malformed YAML"),
    (lambda p: p.write_text("base: &b {provider: docker}\n<<: *b\n"), "merge keys"),
    (lambda p: p.write_text("- provider\n"), "top level must be a mapping"),
    (lambda p: p.write_text("x: " + "[" * 200 + "]" * 200 + "\n"), "levels deep"),
])
def test_files_that_are_not_plain_yaml_text_are_refused_in_one_line(tree, make, fragment):
    make(tree / ENV)
    err = _refused(tree)
    assert err.file == ENV and fragment in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("rel", ["environments/base.yml", NODES, "apps/hello/app.yml"])
def test_a_folder_where_any_file_belongs(tree, rel):
    (tree / rel).unlink()
    (tree / rel).mkdir()
    err = _refused(tree)
    assert (err.file, err.message) == (rel, "is a folder; a YAML file belongs here")


def test_an_alias_bomb_is_refused(tree):
    """Before it is expanded (how long that takes: bench/config_check.py)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]   # 10^10 values
    text = "\n".join(lines) + "\n"
    assert len(text) < 1024
    (tree / ENV).write_text(text)
    err = _refused(tree)
    assert err.file == ENV and "expands to more than" in err.message


def test_a_file_of_too_many_values_is_refused(tree):
    (tree / ENV).write_text("x: [" + ",".join(["1"] * 400_000) + "]\n")   # 800 KB: under the size limit
    err = _refused(tree)
    assert (err.file, err.message) == (ENV, "holds more than 100000 values")


def test_aliases_within_bounds_still_work(tree):
    _append(tree, NODES, "  - &w {name: worker3, role: worker}\n")
    assert "worker3" in [n.name for n in config.load(tree, "test").nodes]


# ---- where errors point, all of them, and what was meant ------------------------------------

def test_a_value_is_blamed_on_the_file_and_line_that_wrote_it(tree):
    _replace(tree, NODES, "172.28.10.31", "172.28.10.300")
    err = _refused(tree)
    assert (err.file, err.key, err.line) == (NODES, "nodes[3].ip", _line_of(tree, NODES, "172.28.10.300"))
    assert str(err).endswith(f"(line {err.line})")


def test_a_value_overriding_the_defaults_is_blamed_on_the_override(tree):
    _append(tree, ENV, "backup:\n  keep:\n    daily: -1\n")
    err = _refused(tree)
    assert (err.file, err.key, err.line) == (ENV, "backup.keep.daily", _line_of(tree, ENV, "daily"))


@pytest.mark.parametrize("key, home", [("provider", ENV), ("network", ENV), ("nodes", NODES), ("dns", "environments/base.yml")])
def test_a_missing_key_is_blamed_on_the_file_where_it_belongs(tree, key, home):
    for rel in (ENV, NODES, "environments/base.yml"):
        data = yaml.safe_load((tree / rel).read_text())
        data.pop(key, None)
        (tree / rel).write_text(yaml.safe_dump(data) if data else "")
    err = _refused(tree)
    assert (err.file, err.key) == (home, key)


def test_a_missing_key_of_a_node_is_blamed_on_the_nodes_file(tree):
    _append(tree, NODES, "  - {name: worker3}\n")
    err = _refused(tree)
    assert (err.file, err.key, err.line) == (NODES, "nodes[4].role", _line_of(tree, NODES, "worker3"))


def test_every_error_of_a_check_is_listed_at_once(tree):
    _append(tree, ENV, "registry:\n  port: true\nlb:\n  name: 'a;b'\nprotcted: true\n")
    _replace(tree, NODES, "172.28.10.20", "172.28.10.999")
    err = _refused(tree)
    found = {(e.file, e.key) for e in err.errors}
    assert found == {(ENV, "registry.port"), (ENV, "lb.name"), (ENV, "protcted"), (NODES, "nodes[1].ip")}
    text = str(err)
    assert text.startswith("4 configuration errors:") and all(e.one_line() in text for e in err.errors)


def test_every_clash_is_listed_at_once(tree):
    _append(tree, ENV, "registry:\n  port: 80\nlb:\n  name: trac\npromoted_from: qa\n")
    assert {e.key for e in _refused(tree).errors} == {"registry.port", "lb.name", "promoted_from"}


@pytest.mark.parametrize("text, meant", [("registry:\n  prot: 5000\n", "port"), ("protcted: true\n", "protected"),
                                          ("backup:\n  keep:\n    dayly: 3\n", "daily")])
def test_a_misspelled_key_gets_a_did_you_mean(tree, text, meant):
    _append(tree, ENV, text)
    assert f"unknown key; did you mean {meant!r}?" in str(_refused(tree))


def test_a_misspelled_key_of_a_node(tree):
    _replace(tree, NODES, "    ip: 172.28.10.20", "    ip: 172.28.10.20\n    memroy: 1024")
    err = _refused(tree)
    assert err.key == "nodes[1].memroy" and "did you mean 'memory'" in str(err)


# ---- speed and order -----------------------------------------------------------------------

def test_5000_workers_are_checked(tree):
    """Every one of them (how long that takes: bench/config_check.py)."""
    (tree / ENV).write_text("provider: docker\nnetwork:\n  name: big\n  subnet: 10.9.0.0/16\n  dynamic: 10.9.200.0/22\n")
    nodes = ["nodes:", "  - {name: master, role: master, ip: 10.9.0.10}", "  - {name: backup, role: backup, ip: 10.9.0.11}"]
    nodes += [f"  - {{name: w{i}, role: worker, ip: 10.9.{1 + i // 250}.{1 + i % 250}}}" for i in range(4000)]
    nodes += [f"  - {{name: d{i}, role: worker}}" for i in range(1000)]
    (tree / NODES).write_text("\n".join(nodes) + "\n")
    env = config.load(tree, "test")
    assert len(env.workers) == 5000


def test_nothing_is_generated_for_a_refused_configuration(tree):
    from lapinfra.project import Project

    _append(tree, ENV, "domain: " + "a" * 70 + "\n")   # made secrets.path crash halfway through the certificates
    with pytest.raises(ConfigError):
        Project("test", root=tree).secrets.ensure()
    assert not (tree / "secrets").exists() and not (tree / "build").exists()


def test_errors_are_listed_by_file_and_line(tree):
    _replace(tree, NODES, "172.28.10.20", "172.28.10.999")
    _append(tree, ENV, "lb:\n  name: 'a;b'\nregistry:\n  port: true\n")
    err = _refused(tree)
    assert [(e.file, e.key) for e in err.errors] == [(ENV, "lb.name"), (ENV, "registry.port"), (NODES, "nodes[1].ip")]


def test_a_missing_ca_bundle_is_blamed_on_the_file_that_listed_it(tree):
    from lapinfra.project import Project

    _replace(tree, "environments/base.yml", "extra_ca_certs: [/etc/ssl/certs/ca-certificates.crt]", "extra_ca_certs: [/nonexistent/ca.pem]")
    with pytest.raises(ConfigError) as err:
        Project("test", root=tree).extra_ca()
    line = _line_of(tree, "environments/base.yml", "/nonexistent/ca.pem")
    assert (err.value.file, err.value.key, err.value.line) == ("environments/base.yml", "build.extra_ca_certs[0]", line)


def test_secrets_failing_halfway_leave_no_half_generated_set(tree, monkeypatch):
    from lapinfra.secrets import SecretStore

    store = SecretStore(tree, config.load(tree, "test"))

    def broken():
        raise ValueError("cannot make the registry certificate")

    monkeypatch.setattr(store, "_registry_cert", broken)
    with pytest.raises(ValueError):
        store.ensure()
    assert list(store.dir.iterdir()) == []
    monkeypatch.undo()
    assert "registry.crt" in SecretStore(tree, config.load(tree, "test")).ensure()
