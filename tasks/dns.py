"""dns: names of the seed's dynamic DNS scheme on the environment's DNS server.

    <name>.host.<domain>  <name>.node.<domain>  <first>-<last>[-<specifier>].pc.<domain>

Each is a TSIG-signed dynamic update to the master's bind9 (lapinfra/ddns.py);
the names live in the zones' files on the master's /data/dns/dynamic/.
"""
from invoke import Collection

from tasks._common import project, task

NAME_HELP = "office.host, master.node or alice-smith-notebook.pc (the domain may follow: office.host.internal)"


def _ddns():
    from lapinfra import ddns  # lazy: dnspython and the config models load only for these tasks

    return ddns


@task(help={"name": NAME_HELP, "ip": "its IPv4 address (default for a node of the environment: its configured one)"})
def register(c, name, env=None, ip=None):
    """Register a host, node or workstation name (replacing its address) on the environment's DNS."""
    p = project(env)
    registered, address = _ddns().register(p, name, ip)
    p.reporter.info(f"{registered} -> {address} (on {p.name}'s DNS, {p.env.master.ip})")


@task(help={"name": NAME_HELP})
def unregister(c, name, env=None):
    """Remove a host, node or workstation name from the environment's DNS."""
    p = project(env)
    removed, present = _ddns().unregister(p, name)
    p.reporter.info(f"{removed} removed from {p.name}'s DNS" if present else f"{removed} was not registered on {p.name}'s DNS")


@task(name="list")
def list_(c, env=None):
    """List the names registered in the dynamic zones (host, node, pc), with their addresses."""
    for name, addresses in _ddns().registered(project(env)).items():
        print(f"{name:48} {' '.join(addresses)}")


ns = Collection("dns", register, unregister, list_)
