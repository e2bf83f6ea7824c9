"""dns: the dynamic names (hosts, nodes, workstations) on the environment's DNS server.

    <name>.host.<domain>  <name>.node.<domain>  <first>-<last>[-<specifier>].pc.<domain>

Each is a TSIG-signed dynamic update to the master's bind9 (lapinfra/ddns.py);
the names live in the zones' files on the master's /data/dns/dynamic/.
"""
from invoke import Collection

from tasks._common import project, task

NAME_HELP = ("the name: <name>.host, <name>.node or <first>-<last>[-<what>].pc, e.g. office.host, master.node, "
             "alice-smith-notebook.pc (the domain may follow: office.host.internal)")


def _ddns():
    from lapinfra import ddns  # lazy: dnspython and the config models load only for these tasks

    return ddns


@task(help={"name": NAME_HELP, "ip": "its IPv4 address (default for a node of the environment: its configured one)"})
def register(c, name, env=None, ip=None):
    """Register a host, node or workstation name (replacing its address) on the environment's DNS.

    Examples:
      invoke dns.register office.host --ip=10.0.0.7 --env=staging
      invoke dns.register --name=alice-smith-notebook.pc --ip=10.0.0.31
      invoke dns.register backup.node       (a node of the environment: its configured address)
    """
    p = project(c, env)
    registered, address = _ddns().register(p, name, ip)
    p.reporter.info(f"{registered} -> {address} (on {p.name}'s DNS, {p.env.master.ip})")


@task(help={"name": NAME_HELP})
def unregister(c, name, env=None):
    """Remove a host, node or workstation name from the environment's DNS.

    Examples:
      invoke dns.unregister office.host --env=staging
      invoke dns.unregister --name=alice-smith-notebook.pc
    """
    p = project(c, env)
    removed, present = _ddns().unregister(p, name)
    p.reporter.info(f"{removed} removed from {p.name}'s DNS" if present else f"{removed} was not registered on {p.name}'s DNS")


@task(name="list")
def list_(c, env=None):
    """List the names registered in the dynamic zones (host, node, pc), with their addresses.

    Example:
      invoke dns.list --env=staging
    """
    for name, addresses in _ddns().registered(project(c, env)).items():
        print(f"{name:48} {' '.join(addresses)}")


ns = Collection("dns", register, unregister, list_)
