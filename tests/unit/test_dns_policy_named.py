"""The rendered named.conf under a real bind9 on the loopback: what each TSIG key may change.

Skipped where bind9 is not installed (`apt-get install bind9`). named runs from a
temporary folder on 127.0.0.1 and a free port; every request goes there only.
"""
import shutil
import socket
import subprocess
import time

import dns.message
import dns.query
import dns.rcode
import dns.update
import pytest

from lapinfra import render
from lapinfra.secrets import dns_key_files

pytestmark = pytest.mark.skipif(shutil.which("named") is None, reason="bind9 (named) is not installed")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback_conf(conf: str, folder, port: int) -> str:
    """The rendered named.conf with its paths in ``folder`` and listening on 127.0.0.1:port only."""
    conf = conf.replace('"/run/named/', f'"{folder}/keys/').replace('"/data/', f'"{folder}/data/')
    conf = conf.replace('directory "/var/cache/bind";', f'directory "{folder}/cache";')
    conf = conf.replace('pid-file "/run/named/named.pid";', f'pid-file "{folder}/named.pid";')
    conf = conf.replace("listen-on { any; };", f"listen-on port {port} {{ 127.0.0.1; }};")
    return conf.replace("listen-on-v6 { any; };", "listen-on-v6 { none; };")


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """(port, project) of a named serving the test environment's rendered zones."""
    from tests.conftest import copy_tree, test_project

    project = test_project(copy_tree(tmp_path_factory.mktemp("tree")))
    files = render.render_all(project).files
    rendered = project.build_dir / "rendered" / "dns"
    run = tmp_path_factory.mktemp("named")
    for sub in ("keys", "data/dynamic", "cache"):
        (run / sub).mkdir(parents=True)
    for key in dns_key_files():
        shutil.copy(project.secrets.path(key), run / "keys" / key)
    (run / "data/db.zone").write_text(files[rendered / "db.zone"])
    for zone in project.env.dynamic_zones:
        (run / f"data/dynamic/{zone}.zone").write_text(files[rendered / render.DYNAMIC_TEMPLATE])
    port = _free_port()
    conf = run / "named.conf"
    conf.write_text(_loopback_conf(files[rendered / "named.conf"], run, port))
    check = subprocess.run(["named-checkconf", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen(["named", "-g", "-4", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                dns.query.tcp(dns.message.make_query(project.env.domain, "SOA"), "127.0.0.1", port=port, timeout=1)
                break
            except (OSError, dns.exception.DNSException):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail("named did not start:\n" + proc.stdout.read())
                time.sleep(0.2)
        yield port, project
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _update(port, zone, key, owner, address="127.0.0.9"):
    message = dns.update.UpdateMessage(zone, keyring=key)
    message.replace(owner, 60, "A", address)
    return dns.query.tcp(message, "127.0.0.1", port=port, timeout=5).rcode()


def _resolves(port, fqdn) -> bool:
    answer = dns.query.tcp(dns.message.make_query(fqdn, "A"), "127.0.0.1", port=port, timeout=5)
    return bool(answer.answer)


@pytest.mark.parametrize("zone", ["host", "node", "pc"])
def test_a_zones_key_changes_names_in_its_zone(named, zone):
    port, project = named
    name = "alice-smith-probe" if zone == "pc" else "probe"
    fqdn = f"{name}.{zone}.{project.env.domain}"
    assert _update(port, f"{zone}.{project.env.domain}", project.secrets.tsig_key(zone), f"{fqdn}.") == dns.rcode.NOERROR
    assert _resolves(port, fqdn)


def test_the_workstations_key_cannot_add_a_main_zone_or_node_name(named):
    port, project = named
    domain = project.env.domain
    pc = project.secrets.tsig_key("pc")
    assert _update(port, domain, pc, f"evil.{domain}.") == dns.rcode.REFUSED
    assert _update(port, f"node.{domain}", pc, f"evil.node.{domain}.") == dns.rcode.REFUSED
    assert _update(port, f"host.{domain}", pc, f"evil.host.{domain}.") == dns.rcode.REFUSED
    assert not _resolves(port, f"evil.{domain}") and not _resolves(port, f"evil.node.{domain}")


def test_no_key_changes_the_main_zone_and_the_transfer_key_updates_nothing(named):
    port, project = named
    domain = project.env.domain
    for zone in (None, "host", "node"):
        assert _update(port, domain, project.secrets.tsig_key(zone), f"git.{domain}.") == dns.rcode.REFUSED, zone
    assert _update(port, f"pc.{domain}", project.secrets.tsig_key(), f"bob-jones.pc.{domain}.") == dns.rcode.REFUSED
    answer = dns.query.tcp(dns.message.make_query(f"git.{domain}", "A"), "127.0.0.1", port=port, timeout=5)
    assert [r.address for r in answer.answer[0]] == [project.env.dns_records[f"git.{domain}"]]


def test_a_zone_key_cannot_change_more_than_a_records(named):
    port, project = named
    zone = f"pc.{project.env.domain}"
    message = dns.update.UpdateMessage(zone, keyring=project.secrets.tsig_key("pc"))
    message.replace("@", 60, "NS", f"evil.{project.env.domain}.")
    assert dns.query.tcp(message, "127.0.0.1", port=port, timeout=5).rcode() == dns.rcode.REFUSED
