"""Dynamic DNS on the running test environment: register, resolve with dig, update,
survive a restart, a recreation and a restore of the DNS container, unregister; a
wrong key and a name off the scheme are refused and change nothing.

The records use addresses of the test network (172.28.10.0/24) that no machine
holds: they are only resolved, never contacted."""
import base64
import json
import os
import subprocess
import time
import uuid

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest

from lapinfra import config, ddns
from lapinfra.errors import LapinfraError
from lapinfra.secrets import SecretStore
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e

A1, A2, A3 = "172.28.10.77", "172.28.10.78", "172.28.10.79"


@pytest.fixture(scope="module")
def env(infra):
    return config.load(ROOT, ENV)


@pytest.fixture(scope="module")
def master(env):
    return str(env.master.ip)


def fqdn(env, name):
    return f"{name}.{env.domain}"


def dig(master, name):
    run = subprocess.run(["dig", f"@{master}", name, "A", "+short", "+time=3", "+tries=2"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def rcode(master, name):
    return dns.query.udp(dns.message.make_query(name, "A"), master, timeout=5).rcode()


def wait_dns(master, env, timeout=60):
    """Until named answers for every zone again (after a restart or a recreation)."""
    deadline = time.monotonic() + timeout
    zones = [env.domain, *env.dynamic_zones]
    while True:
        try:
            if all(dns.query.udp(dns.message.make_query(z, "SOA"), master, timeout=2).rcode() == dns.rcode.NOERROR for z in zones):
                return
        except (dns.exception.Timeout, OSError):
            pass
        assert time.monotonic() < deadline, f"the DNS of {ENV} did not answer within {timeout}s after the restart"
        time.sleep(1)


def register(name, ip):
    return invoke("dns.register", f"--env={ENV}", name, "--ip", ip)


def unregister(name, check=True):
    return invoke("dns.unregister", f"--env={ENV}", name, check=check)


def test_the_nodes_are_registered_when_the_infrastructure_starts(env, master):
    for name, ip in env.node_records.items():
        assert dig(master, name) == [ip], name


def test_register_resolve_update_restart_unregister(env, master):
    host, pc = "e2e-office.host", "alice-smith-notebook.pc"
    try:
        out = register(host, A1)
        assert "e2e-office.host.internal -> 172.28.10.77" in out.stderr
        register(pc, A2)
        assert dig(master, fqdn(env, host)) == [A1]
        assert dig(master, fqdn(env, pc)) == [A2]

        register(f"{fqdn(env, host)}.", A3)                  # the update replaces the address
        assert dig(master, fqdn(env, host)) == [A3]

        node_sh("docker restart infra_dns")
        wait_dns(master, env)
        assert dig(master, fqdn(env, host)) == [A3]
        assert dig(master, fqdn(env, pc)) == [A2]

        node_sh("docker rm -f infra_dns")                    # recreated from the release, as a deploy would
        invoke("start", f"--env={ENV}")
        wait_dns(master, env)
        assert dig(master, fqdn(env, host)) == [A3]
        assert dig(master, fqdn(env, pc)) == [A2]
        for name, ip in env.node_records.items():
            assert dig(master, name) == [ip], name

        listed = invoke("dns.list", f"--env={ENV}").stdout
        assert any(line.split() == [fqdn(env, host), A3] for line in listed.splitlines()), listed

        assert "removed" in unregister(host).stderr
        assert dig(master, fqdn(env, host)) == []
        assert rcode(master, fqdn(env, host)) == dns.rcode.NXDOMAIN
        assert "was not registered" in unregister(host).stderr
        assert dig(master, fqdn(env, pc)) == [A2]            # the other name is untouched
    finally:
        unregister(host, check=False)
        unregister(pc, check=False)


def test_registered_names_survive_a_restore(env, master):
    pc, tag = "bob-jones.pc", uuid.uuid4().hex[:8]
    try:
        register(pc, A1)
        invoke("snapshot.create", f"--env={ENV}", "--label", f"ddns-{tag}")
        snaps = json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)
        snap = next(s for s in snaps if s["label"] == f"ddns-{tag}")
        unregister(pc)
        assert dig(master, fqdn(env, pc)) == []
        invoke("restore", f"--env={ENV}", "--snapshot", snap["id"])
        wait_dns(master, env)
        assert dig(master, fqdn(env, pc)) == [A1]
    finally:
        unregister(pc, check=False)


def test_an_update_signed_with_a_wrong_key_is_refused_and_changes_nothing(env, master):
    host = "e2e-keep.host"
    real = SecretStore(ROOT, env).tsig_key()
    wrong = dns.tsig.Key(real.name, base64.b64encode(os.urandom(32)).decode(), real.algorithm)   # same name, other secret
    try:
        register(host, A1)
        message = ddns.update_message(f"host.{env.domain}", wrong, {fqdn(env, host): A2})
        with pytest.raises(LapinfraError, match="refused the update.*wrong TSIG key"):
            ddns.send(message, master)
        deletion = ddns.update_message(f"host.{env.domain}", wrong, {fqdn(env, host): None})
        with pytest.raises(LapinfraError, match="refused the update"):
            ddns.send(deletion, master)
        unsigned = dns.update.UpdateMessage(f"host.{env.domain}")
        unsigned.replace(fqdn(env, host), 60, "A", A3)
        assert dns.query.tcp(unsigned, master, timeout=5).rcode() == dns.rcode.REFUSED
        assert dig(master, fqdn(env, host)) == [A1]
    finally:
        unregister(host, check=False)


def test_a_workstation_name_off_the_pattern_is_refused(env, master):
    run = invoke("dns.register", f"--env={ENV}", "alice.pc", "--ip", A1, check=False)
    assert run.returncode == 1
    assert "<first>-<last>[-<specifier>].pc.internal" in run.stderr and "alice-smith-notebook.pc.internal" in run.stderr
    assert "Traceback" not in run.stderr
    assert dig(master, fqdn(env, "alice.pc")) == []
    outside = invoke("dns.register", f"--env={ENV}", "git", "--ip", A1, check=False)
    assert outside.returncode == 1 and "<name>.host.internal" in outside.stderr
    assert dig(master, fqdn(env, "git")) == [str(env.master.ip)]    # the rendered name is untouched
