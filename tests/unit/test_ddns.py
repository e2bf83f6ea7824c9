"""Dynamic DNS: the scheme's names, the signed update messages, their sending, and the zones rendered for them.

Messages are sent only to a stand-in server on this machine's loopback."""
import base64
import os
import socket
import subprocess
import sys
import threading

import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.zone
import pytest

from lapinfra import config, ddns, phases, render
from lapinfra.actions import RegisterName
from lapinfra.errors import ConfigError, LapinfraError
from tests.conftest import ROOT


def fresh_key(name="lapinfra-test"):
    """A key of the environment's name and algorithm, but another secret."""
    return dns.tsig.Key(name, base64.b64encode(os.urandom(32)).decode(), "hmac-sha256")


# ---- the scheme's names -----------------------------------------------------------------------

@pytest.mark.parametrize("text, fqdn, zone", [
    ("office.host", "office.host.internal", "host.internal"),
    ("office.host.internal", "office.host.internal", "host.internal"),
    ("office.host.internal.", "office.host.internal", "host.internal"),
    ("rack-2.host", "rack-2.host.internal", "host.internal"),
    ("master.node", "master.node.internal", "node.internal"),
    ("alice-smith.pc", "alice-smith.pc.internal", "pc.internal"),
    ("alice-smith-notebook.pc.internal", "alice-smith-notebook.pc.internal", "pc.internal"),
    ("bob-jones-lab2.pc", "bob-jones-lab2.pc.internal", "pc.internal"),
    ("Alice-Smith.PC.internal", "alice-smith.pc.internal", "pc.internal"),   # DNS names know no case
])
def test_names_of_the_scheme_are_accepted(text, fqdn, zone):
    name = ddns.parse(text, "internal")
    assert (name.fqdn, name.zone) == (fqdn, zone)


@pytest.mark.parametrize("text", [
    "alice.pc", "alice-smith-old-notebook.pc", "alice_smith.pc", "alice-.pc", "-smith.pc",
    "alice-sm1th.pc", "4lice-smith.pc", "alice--smith.pc", "alice-smith-.pc", "a.alice-smith.pc.internal",
])
def test_a_workstation_name_off_the_pattern_is_refused_with_the_pattern(text):
    with pytest.raises(LapinfraError) as err:
        ddns.parse(text, "internal")
    message = str(err.value)
    assert "<first>-<last>[-<specifier>].pc.internal" in message
    assert "alice-smith-notebook.pc.internal" in message      # an example
    assert repr(text) in message


@pytest.mark.parametrize("text", ["git", "git.internal", "office.server", "host", "host.internal", "office.host.example", ""])
def test_names_outside_host_node_pc_are_refused_listing_the_three_forms(text):
    with pytest.raises(LapinfraError) as err:
        ddns.parse(text, "internal")
    message = str(err.value)
    for form in ("<name>.host.internal", "<name>.node.internal", "<first>-<last>[-<specifier>].pc.internal"):
        assert form in message


@pytest.mark.parametrize("text", ["-office.host", "office-.node", "a.b.host", "off_ice.host", "x" * 64 + ".host"])
def test_a_host_or_node_name_must_be_one_dns_label(text):
    with pytest.raises(LapinfraError, match="one DNS label"):
        ddns.parse(text, "internal")


def test_the_scheme_follows_the_environments_domain():
    assert ddns.parse("office.host.corp.example", "corp.example").zone == "host.corp.example"
    with pytest.raises(LapinfraError, match="<name>.host.corp.example"):
        ddns.parse("office.host.internal", "corp.example")


@pytest.mark.parametrize("text", ["300.1.2.3", "1.2.3", "fe80::1", "office", "0.0.0.0", "224.0.0.1", "255.255.255.255", ""])
def test_a_bad_ip_is_refused(text):
    with pytest.raises(LapinfraError, match="--ip"):
        ddns.parse_ip(text)


def test_the_default_address_is_a_nodes_configured_one(project):
    env = project.env
    assert ddns.address_for(env, ddns.parse("backup.node", "internal"), None) == "172.28.10.20"
    assert ddns.address_for(env, ddns.parse("backup.node", "internal"), " 172.28.10.77") == "172.28.10.77"
    with pytest.raises(LapinfraError, match="no node of nodes/test.yml .*--ip"):
        ddns.address_for(env, ddns.parse("worker9.node", "internal"), None)
    with pytest.raises(LapinfraError, match="needs an address: --ip"):
        ddns.address_for(env, ddns.parse("office.host", "internal"), None)


# ---- the update messages --------------------------------------------------------------------------

def test_tsig_key_is_the_one_named_conf_includes(project):
    key = project.secrets.tsig_key()
    assert key.name == dns.name.from_text("lapinfra-test")
    assert key.algorithm == dns.name.from_text("hmac-sha256")
    assert len(key.secret) == 32
    assert base64.b64encode(key.secret).decode() not in repr(key) and "***" in repr(key)


def test_a_key_file_of_another_shape_is_an_error(project):
    project.secrets.path("tsig.key").write_text("not a key\n")
    with pytest.raises(LapinfraError, match="not a BIND key file"):
        project.secrets.tsig_key()


def test_register_message_replaces_the_a_records_in_one_signed_update(project):
    key = project.secrets.tsig_key()
    message = ddns.update_message("pc.internal", key, {"alice-smith.pc.internal": "172.28.10.77"})
    wire = message.to_wire()
    parsed = dns.message.from_wire(wire, keyring={key.name: key})       # the signature checks out
    assert parsed.opcode() == dns.opcode.UPDATE
    assert parsed.keyname == dns.name.from_text("lapinfra-test")
    assert parsed.keyalgorithm == dns.name.from_text("hmac-sha256")
    zone = parsed.sections[0]
    assert [(r.name.to_text(), r.rdtype) for r in zone] == [("pc.internal.", dns.rdatatype.SOA)]
    delete, add = parsed.sections[2]
    owner = dns.name.from_text("alice-smith.pc.internal")
    assert (delete.name, delete.deleting, delete.rdtype, len(delete)) == (owner, dns.rdataclass.ANY, dns.rdatatype.A, 0)
    assert (add.name, add.deleting, add.rdclass, add.rdtype, add.ttl) == (owner, None, dns.rdataclass.IN, dns.rdatatype.A, ddns.TTL)
    assert [r.address for r in add] == ["172.28.10.77"]


def test_a_message_signed_with_another_key_does_not_verify(project):
    wire = ddns.update_message("host.internal", fresh_key(), {"office.host.internal": "172.28.10.77"}).to_wire()
    key = project.secrets.tsig_key()
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(wire, keyring={key.name: key})


def test_unregister_message_deletes_only(project):
    message = ddns.update_message("host.internal", project.secrets.tsig_key(), {"office.host.internal": None})
    (delete,) = message.sections[2]
    assert (delete.deleting, delete.rdtype, len(delete)) == (dns.rdataclass.ANY, dns.rdatatype.A, 0)


# ---- sending, to a stand-in server on the loopback -------------------------------------------------------

class StandIn:
    """A one-connection-at-a-time DNS server on 127.0.0.1 that answers every message with
    ``rcode`` (signed with ``key`` when given, carrying ``tsig_error``) and keeps what it got,
    having checked its signature with ``key`` when ``verify``."""

    def __init__(self, key=None, rcode=dns.rcode.NOERROR, tsig_error=0, verify=True):
        self.key, self.rcode, self.tsig_error, self.verify = key, rcode, tsig_error, verify
        self.received = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                keyring = {self.key.name: self.key} if self.key and self.verify else False
                query, _ = dns.query.receive_tcp(conn, keyring=keyring, ignore_trailing=True)
                self.received.append(query)
                response = dns.message.make_response(query)
                response.set_rcode(self.rcode)
                if self.key and query.had_tsig:
                    response.use_tsig(self.key, tsig_error=self.tsig_error)
                dns.query.send_tcp(conn, response)

    def close(self):
        self.sock.close()


@pytest.fixture
def server(project, monkeypatch):
    made = []

    def start(**kwargs):
        s = StandIn(**kwargs)
        made.append(s)
        monkeypatch.setattr(ddns, "PORT", s.port)
        monkeypatch.setattr(ddns, "_server", lambda p: "127.0.0.1")
        return s

    yield start
    for s in made:
        s.close()


def test_register_sends_the_signed_replace_to_the_master(project, server):
    s = server(key=project.secrets.tsig_key("host"))
    name, address = ddns.register(project, "office.host", "172.28.10.77")
    assert (str(name), address) == ("office.host.internal", "172.28.10.77")
    (got,) = s.received
    assert got.had_tsig and got.keyname == dns.name.from_text("lapinfra-test-host")
    assert [r.to_text() for r in got.sections[2]] == ["office.host.internal. ANY A", "office.host.internal. 300 IN A 172.28.10.77"]


def test_a_refused_name_or_address_sends_nothing(project, server):
    s = server(key=project.secrets.tsig_key("host"))
    for name, ip in (("alice.pc", "172.28.10.77"), ("git", "172.28.10.77"), ("office.host", "300.0.0.1"), ("office.host", None)):
        with pytest.raises(LapinfraError):
            ddns.register(project, name, ip)
    assert s.received == []


def test_unregister_says_whether_the_name_was_there(project, server):
    server(key=project.secrets.tsig_key("host"))
    assert ddns.unregister(project, "office.host") == (ddns.parse("office.host", "internal"), True)
    s = server(key=project.secrets.tsig_key("host"), rcode=dns.rcode.NXRRSET)
    assert ddns.unregister(project, "office.host")[1] is False
    (got,) = s.received
    (prerequisite,) = got.sections[1]            # the A records must be there
    assert (prerequisite.deleting, prerequisite.rdtype) == (dns.rdataclass.ANY, dns.rdatatype.A)


@pytest.mark.parametrize("rcode", [dns.rcode.REFUSED, dns.rcode.NOTAUTH])
def test_a_refusal_names_the_key(project, server, rcode):
    server(key=project.secrets.tsig_key("host"), rcode=rcode)
    with pytest.raises(LapinfraError, match=r"refused the update \((REFUSED|NOTAUTH)\): wrong TSIG key, or a key that may not change this zone"):
        ddns.register(project, "office.host", "172.28.10.77")


@pytest.mark.parametrize("tsig_error, shown", [(dns.rcode.BADSIG, "BADSIG"), (dns.rcode.BADKEY, "BADKEY")])
def test_a_tsig_error_of_the_server_names_the_key(project, server, tsig_error, shown):
    server(key=project.secrets.tsig_key("host"), rcode=dns.rcode.NOTAUTH, tsig_error=tsig_error)
    with pytest.raises(LapinfraError, match=rf"refused the update: wrong TSIG key\? \({shown}\)"):
        ddns.register(project, "office.host", "172.28.10.77")


def test_an_answer_signed_with_another_key_is_not_trusted(project, server):
    server(key=fresh_key(), verify=False)
    with pytest.raises(LapinfraError, match="not signed with the environment's TSIG key"):
        ddns.register(project, "office.host", "172.28.10.77")


def test_an_unsigned_answer_is_not_trusted(project, server):
    server(rcode=dns.rcode.REFUSED)
    with pytest.raises(LapinfraError, match="not usable: response requires a TSIG"):
        ddns.register(project, "office.host", "172.28.10.77")


def test_another_failure_is_named(project, server):
    server(key=project.secrets.tsig_key("host"), rcode=dns.rcode.SERVFAIL)
    with pytest.raises(LapinfraError, match="answered SERVFAIL"):
        ddns.register(project, "office.host", "172.28.10.77")


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_no_server_is_unreachable(project):
    with pytest.raises(ddns.Unreachable, match="cannot reach the DNS server at 127.0.0.1"):
        ddns.send(ddns.update_message("host.internal", project.secrets.tsig_key(), {"office.host.internal": None}),
                  "127.0.0.1", port=_closed_port())


NODES = {"backup.node.internal": "172.28.10.20", "master.node.internal": "172.28.10.10",
         "worker1.node.internal": "172.28.10.130", "worker2.node.internal": "172.28.10.31"}


@pytest.mark.parametrize("held, registered", [
    pytest.param({n: [a] for n, a in NODES.items()}, [], id="no-op: every name holds its address"),
    pytest.param({**{n: [a] for n, a in NODES.items()}, "old.node.internal": ["172.28.10.5"]}, [],
                 id="no-op: a name of no node is left alone"),
    pytest.param({}, list(NODES), id="nothing registered yet"),
    pytest.param({**{n: [a] for n, a in NODES.items()}, "worker1.node.internal": ["172.28.10.129"]},
                 ["worker1.node.internal"], id="a dynamic node with a new address"),
    pytest.param({**{n: [a] for n, a in NODES.items()}, "master.node.internal": ["172.28.10.10", "172.28.10.11"]},
                 ["master.node.internal"], id="a second address"),
])
def test_name_actions(held, registered):
    assert ddns.name_actions(NODES, held) == [RegisterName(name, NODES[name]) for name in registered]


def test_register_nodes_sends_the_missing_or_wrong_names_and_never_fails(project, server, monkeypatch):
    from lapinfra.nodes import Nodes

    # worker1 has no fixed address: it is registered with the one it holds (here: a stand-in)
    monkeypatch.setattr(Nodes, "dynamic_records", lambda self: {"worker1.node.internal": "172.28.10.130"})
    held = {"master.node.internal": ["172.28.10.10"], "worker2.node.internal": ["172.28.10.99"]}
    transfers = []
    monkeypatch.setattr(ddns, "transfer", lambda p, zone, timeout: transfers.append(zone) or held)
    s = server(key=project.secrets.tsig_key("node"))
    assert [a.name for a in ddns.register_nodes(project)] == [
        "backup.node.internal", "worker1.node.internal", "worker2.node.internal"]
    (got,) = s.received
    added = {r.name.to_text(): r[0].address for r in got.sections[2] if r.deleting is None}
    assert added == {"backup.node.internal.": "172.28.10.20", "worker1.node.internal.": "172.28.10.130",
                     "worker2.node.internal.": "172.28.10.31"}
    assert got.sections[0][0].name.to_text() == "node.internal." and transfers == ["node.internal"]

    held.update({name.rstrip("."): [address] for name, address in added.items()})
    assert ddns.register_nodes(project) == [] and len(s.received) == 1          # nothing to change: nothing sent
    assert project.reporter.lines[-1] == "node names in node.internal: each registered already"

    held.clear()
    monkeypatch.setattr(ddns, "PORT", _closed_port())
    assert ddns.register_nodes(project) is None
    assert project.reporter.lines[-1].startswith("! node names not registered in node.internal")

    def unreachable(p, zone, timeout):
        raise ddns.Unreachable("no answer")
    monkeypatch.setattr(ddns, "transfer", unreachable)
    assert ddns.register_nodes(project, expect_down=True) is None
    assert project.reporter.lines[-1].startswith("node names not registered: the DNS does not run yet")
    monkeypatch.setattr(ddns, "transfer", lambda p, zone, timeout: {})
    server(key=project.secrets.tsig_key("node"), rcode=dns.rcode.REFUSED)
    assert ddns.register_nodes(project, expect_down=True) is None      # a refusal always warns
    assert project.reporter.lines[-1].startswith("! ") and "wrong TSIG key" in project.reporter.lines[-1]


def test_the_cli_refuses_a_workstation_name_in_one_line():
    run = subprocess.run([sys.executable, "-m", "invoke", "dns.register", "--env=test", "alice.pc", "--ip", "172.28.10.77"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert "<first>-<last>[-<specifier>].pc.internal" in run.stderr


# ---- the zones rendered for them ----------------------------------------------------------------------

def _rendered(project):
    out = render.render_all(project)
    folder = project.build_dir / "rendered" / "dns"
    return {name: out.files[folder / name] for name in ("db.zone", "named.conf", render.DYNAMIC_TEMPLATE)}


def test_the_domains_zone_delegates_the_dynamic_zones_and_holds_no_node_names(project):
    files = _rendered(project)
    env = project.env
    render.check_zone(files["db.zone"], "internal", env.zone_records, env.dynamic_zones)
    zone = dns.zone.from_text(files["db.zone"], origin="internal.", relativize=False)
    for cut in ("host", "node", "pc"):
        assert [r.target.to_text() for r in zone.find_rdataset(f"{cut}.internal.", "NS")] == ["ns.internal."]
    assert not [n for n in zone.nodes if n.to_text().endswith(".node.internal.")]
    assert set(env.node_records) == {"master.node.internal", "backup.node.internal", "worker2.node.internal"}  # fixed addresses
    assert env.dns_records == {**env.zone_records, **env.node_records}


def test_the_dynamic_template_is_an_empty_zone_for_each_of_them(project):
    template = _rendered(project)[render.DYNAMIC_TEMPLATE]
    for origin in project.env.dynamic_zones:
        render.check_zone(template, origin, {})
        zone = dns.zone.from_text(template, origin=origin + ".", relativize=False)
        assert zone.get_soa().mname.to_text() == "ns.internal."
        assert not list(zone.iterate_rdatasets(dns.rdatatype.A))


def test_named_conf_serves_each_dynamic_zone_from_data_dynamic_with_signed_updates(project):
    conf = _rendered(project)["named.conf"]
    assert "recursion no;" in conf
    assert conf.index('zone "internal"') < conf.index('zone "host.internal"')   # the first zone is the domain's
    for zone in project.env.dynamic_zones:
        block = conf.split(f'zone "{zone}" {{')[1].split("\n};")[0]
        assert f'file "/data/dynamic/{zone}.zone";' in block
        kind = zone.split(".")[0]
        assert f'update-policy {{ grant "lapinfra-test-{kind}" zonesub A; }};' in block   # its own key only
    command = render.named_check_command(project.env)
    assert command.count("named-checkzone -i local") == 3 and "named-checkconf /env/dns/named.conf" in command


def test_a_record_below_a_delegation_fails_the_check(project):
    zone = _rendered(project)["db.zone"] + "master.node IN A 172.28.10.10\n"
    with pytest.raises(LapinfraError, match="below a delegation.*master.node.internal"):
        render.check_zone(zone, "internal", project.env.zone_records, project.env.dynamic_zones)
    without = "\n".join(line for line in _rendered(project)["db.zone"].splitlines() if "IN  NS" not in line or line.startswith(" "))
    with pytest.raises(LapinfraError, match="does not delegate host.internal, node.internal, pc.internal"):
        render.check_zone(without, "internal", project.env.zone_records, project.env.dynamic_zones)


def test_a_configured_name_inside_a_dynamic_zone_is_refused(tree):
    base = tree / "environments/base.yml"
    base.write_text(base.read_text().replace("    backup: backup\n", "    backup: backup\n    office.host: master\n"))
    with pytest.raises(ConfigError, match=r"dns.names: 'office.host' falls into the dynamic zone host.<domain>.*dns.register"):
        config.load(tree, "test")


def test_the_seed_carries_base_registry_and_backup(project):
    assert phases.seed_tags(project.env) == ["infra/base", "infra/backup", "infra/registry"]


# ---- seeding (the engines are stand-ins) --------------------------------------------------------------------

class FakeImage:
    def __init__(self, id_, tags):
        self.id, self.tags, self.saved = id_, tags, []

    def save(self, named=False):
        assert named in self.tags, f"docker save {named} of an image tagged {self.tags}"
        self.saved.append(named)
        return iter([b"tar"])


class FakeEngine:
    """The node's engine (docker SDK shape): images by tag, and what docker load received."""

    def __init__(self, images, load_reply=({"stream": "Loaded image"},)):
        import types

        self.by_tag, self.loaded, self.load_reply = dict(images), [], load_reply
        self.images = types.SimpleNamespace(get=self._get)
        self.api = types.SimpleNamespace(load_image=self._load)

    def _get(self, tag):
        import docker.errors

        if tag not in self.by_tag:
            raise docker.errors.ImageNotFound(tag)
        return self.by_tag[tag]

    def _load(self, archive):
        self.loaded.append(b"".join(archive))
        return iter(self.load_reply)


def _session(project, node_images, workstation_images, **kwargs):
    import types

    project.docker = FakeEngine(workstation_images)          # the workstation's engine
    return types.SimpleNamespace(docker=FakeEngine(node_images, **kwargs), env=project.env, p=project)


def test_seed_loads_what_the_node_lacks_or_holds_differently_under_the_asked_tag(project):
    base = FakeImage("sha256:b", ["debian:bookworm-slim", "infra/base:latest"])    # a pulled base: another first tag
    registry, backup = FakeImage("sha256:r", ["infra/registry:latest"]), FakeImage("sha256:k", ["infra/backup:latest"])
    s = _session(project, {"infra/registry": FakeImage("sha256:r", []), "infra/backup": FakeImage("sha256:old", [])},
                 {"infra/base": base, "infra/registry": registry, "infra/backup": backup})
    assert phases.seed(s, project) == ["infra/backup", "infra/base"]
    assert base.saved == ["infra/base:latest"] and backup.saved == ["infra/backup:latest"] and registry.saved == []
    assert len(s.docker.loaded) == 2


def test_seed_of_an_image_not_built_names_the_build(project):
    s = _session(project, {}, {})
    with pytest.raises(LapinfraError, match=r"image infra/base is missing: run `invoke build`"):
        phases.seed(s, project)


def test_a_failed_docker_load_is_an_error(project):
    s = _session(project, {}, {"infra/backup": FakeImage("sha256:k", ["infra/backup:latest"])},
                 load_reply=({"error": "no space left on device"},))
    with pytest.raises(LapinfraError, match="docker load of infra/backup on the node failed: no space left"):
        phases.seed(s, project, ["infra/backup"])


def test_start_refuses_a_node_kept_image_that_is_missing_and_names_node_seed(project):
    s = _session(project, {}, {})
    with pytest.raises(LapinfraError, match=r"infra/registry is not on master: `invoke node.seed --env=test`"):
        phases._require_seeded(s, "infra/registry")
