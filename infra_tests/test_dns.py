"""DNS: the master's bind9 answers every name of the environment, and nothing else."""
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update


def _ask(server, name, rdtype="A"):
    return dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=3)


def test_record_resolves_to_its_address(master_ip, record):
    name, address = record
    answer = _ask(master_ip, name)
    assert answer.rcode() == dns.rcode.NOERROR
    found = [r.address for rrset in answer.answer for r in rrset if rrset.rdtype == dns.rdatatype.A]
    assert found == [address]


def test_zone_is_authoritative_with_soa(master_ip, env):
    answer = _ask(master_ip, env.domain, "SOA")
    assert answer.flags & dns.flags.AA
    assert answer.answer[0][0].mname.to_text() == f"ns.{env.domain}."


def test_dynamic_zones_are_served_and_delegated(master_ip, env):
    """host., node., pc.<domain>: zones of their own (names registered by `invoke dns.register`)."""
    for zone in env.dynamic_zones:
        answer = _ask(master_ip, zone, "SOA")
        assert answer.rcode() == dns.rcode.NOERROR and answer.flags & dns.flags.AA, zone
        assert answer.answer[0][0].mname.to_text() == f"ns.{env.domain}.", zone


def test_outside_name_is_not_answered(master_ip):
    """No recursion: the network rule forbids reaching the internet."""
    answer = _ask(master_ip, "example.com")
    assert answer.rcode() in (dns.rcode.REFUSED, dns.rcode.SERVFAIL)
    assert not answer.answer


def test_unsigned_dynamic_update_is_refused(master_ip, env):
    update = dns.update.UpdateMessage(env.domain)
    update.replace("intruder", 60, "A", "127.0.0.9")
    response = dns.query.tcp(update, master_ip, timeout=5)
    assert response.rcode() == dns.rcode.REFUSED
    assert _ask(master_ip, f"intruder.{env.domain}").rcode() == dns.rcode.NXDOMAIN


def test_signed_dynamic_update_is_accepted(master_ip, env, project):
    """A workstation name, signed with the workstations' key (each dynamic zone takes its own key)."""
    keyring = project.secrets.tsig_key("pc")
    zone = f"pc.{env.domain}"
    name = "verify-suite-probe"
    add = dns.update.UpdateMessage(zone, keyring=keyring)
    add.replace(name, 60, "A", "127.0.0.8")
    assert dns.query.tcp(add, master_ip, timeout=5).rcode() == dns.rcode.NOERROR
    try:
        assert [r.address for r in _ask(master_ip, f"{name}.{zone}").answer[0]] == ["127.0.0.8"]
    finally:
        remove = dns.update.UpdateMessage(zone, keyring=keyring)
        remove.delete(name, "A")
        dns.query.tcp(remove, master_ip, timeout=5)
