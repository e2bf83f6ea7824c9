"""Dynamic DNS: the names of hosts, nodes and workstations.

    <name>.host.<domain>                        a host, the machine that runs nodes (office.host.internal)
    <name>.node.<domain>                        a node (registered by lapinfra whenever the infrastructure starts,
                                                where missing or wrong)
    <first>-<last>[-<specifier>].pc.<domain>    a user's workstation (alice-smith-notebook.pc.internal)

Each of host, node and pc is a zone of its own on the master's bind9 (see
config.DYNAMIC_ZONES and images/dns/): created once, never rendered over, so the
names survive restarts, deploys and restores. Names are added and removed by
dynamic updates (RFC 2136) sent over TCP to the master's port 53, each signed with
the key of its zone (``tsig-<zone>.key`` in the secrets folder, as
``nsupdate -k tsig-pc.key`` would sign it): bind9's update-policy lets a zone's key
change the A records of that zone only, and no key changes the rendered main zone.
The listing (a zone transfer) is signed with the transfer key, ``tsig.key``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import dns.zone

from .actions import RegisterName
from .config import DYNAMIC_ZONES
from .errors import LapinfraError
from .nodes import Nodes

TTL = 300
PORT = 53
TIMEOUT = 10.0

LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
WORKSTATION = re.compile(r"[a-z]+-[a-z]+(-[a-z0-9]+)?")
WORKSTATION_FORM = "<first>-<last>[-<specifier>]"


class Unreachable(LapinfraError):
    """No DNS server answers at the master's address (yet)."""


@dataclass(frozen=True)
class Name:
    """A name of the dynamic scheme: ``label`` in the zone ``kind``.<domain>."""

    label: str
    kind: str       # one of DYNAMIC_ZONES
    domain: str

    @property
    def zone(self) -> str:
        return f"{self.kind}.{self.domain}"

    @property
    def fqdn(self) -> str:
        return f"{self.label}.{self.zone}"

    def __str__(self) -> str:
        return self.fqdn


def forms(domain: str) -> str:
    """The three forms of the scheme, for error messages."""
    return (f"<name>.host.{domain} (a host), <name>.node.{domain} (a node), "
            f"{WORKSTATION_FORM}.pc.{domain} (a workstation, e.g. alice-smith-notebook.pc.{domain})")


def parse(text: str, domain: str) -> Name:
    """``office.host``, ``alice-smith-notebook.pc.internal``, ``master.node.internal.``: checked against the scheme."""
    fqdn = text.strip().lower().rstrip(".")
    relative = fqdn[: -len(domain) - 1] if fqdn.endswith("." + domain) else fqdn
    label, _, kind = relative.rpartition(".")
    if kind not in DYNAMIC_ZONES or not label:
        raise LapinfraError(f"{text!r} is not a name of the dynamic DNS scheme; the names are {forms(domain)}")
    if kind == "pc":
        if not WORKSTATION.fullmatch(label):
            raise LapinfraError(
                f"{text!r} is not a workstation name: expected {WORKSTATION_FORM}.pc.{domain}, the user's first and "
                f"last name in lowercase letters joined by one dash, then optionally a dash and a specifier "
                f"(letters and digits), e.g. alice-smith.pc.{domain} or alice-smith-notebook.pc.{domain}")
    elif not LABEL.fullmatch(label):
        raise LapinfraError(
            f"{text!r} is not a {kind} name: expected <name>.{kind}.{domain} with <name> one DNS label "
            f"(lowercase letters, digits and inner dashes, at most 63), e.g. office.{kind}.{domain}")
    return Name(label, kind, domain)


def parse_ip(text: str) -> str:
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise LapinfraError(f"--ip {text!r} is not an IPv4 address (four numbers 0-255 joined by dots, e.g. 192.168.0.42)") from None
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        raise LapinfraError(f"--ip {text!r} is not the address of one machine")
    return str(address)


def address_for(env, name: Name, ip: str | None) -> str:
    """--ip, checked; without it, the configured address of a node of the environment."""
    if ip:
        return parse_ip(ip)
    if name.kind == "node":
        for node in env.nodes:
            if node.name == name.label and not node.dynamic:
                return str(node.ip)
            if node.name == name.label:
                raise LapinfraError(f"{name} has no fixed address in nodes/{env.name}.yml (it registers the one it holds "
                                    "whenever the infrastructure starts): give one with --ip")
        known = ", ".join(n.name for n in env.nodes)
        raise LapinfraError(f"{name} is no node of nodes/{env.name}.yml (nodes: {known}): give its address with --ip")
    raise LapinfraError(f"{name} needs an address: --ip A (only the environment's nodes have a default)")


# ---- the update messages ------------------------------------------------------------

def update_message(zone: str, key: dns.tsig.Key, records: dict[str, str | None], ttl: int = TTL) -> dns.update.UpdateMessage:
    """One signed update of ``zone``: for each name, its A records deleted and, where
    an address is given, that address added (a replace, applied as one change)."""
    message = dns.update.UpdateMessage(zone, keyring=key)
    for fqdn, ip in sorted(records.items()):
        owner = dns.name.from_text(fqdn)
        message.delete(owner, dns.rdatatype.A)
        if ip is not None:
            message.add(owner, ttl, dns.rdatatype.A, ip)
    return message


def send(message: dns.message.Message, server: str, port: int | None = None, timeout: float = TIMEOUT) -> int:
    """Send a signed message over TCP (to port 53 unless told); the response's rcode. Refusals raise LapinfraError."""
    port = port or PORT
    where = f"{server}:{port}"
    try:
        response = dns.query.tcp(message, server, port=port, timeout=timeout)
    except dns.tsig.PeerBadTime:
        raise LapinfraError(f"the DNS server at {where} refused the update: its clock and this machine's differ "
                            "by more than the TSIG fudge (BADTIME)") from None
    except dns.tsig.PeerError as exc:
        raise LapinfraError(f"the DNS server at {where} refused the update: wrong TSIG key? ({_tsig_error(exc)})") from None
    except (dns.tsig.BadSignature, dns.message.UnknownTSIGKey, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        raise LapinfraError(f"the answer of the DNS server at {where} is not signed with the environment's TSIG key") from None
    except dns.exception.FormError as exc:  # among them: an unsigned answer to a signed update
        raise LapinfraError(f"the answer of the DNS server at {where} is not usable: {exc}") from None
    except dns.exception.Timeout:
        raise Unreachable(f"no answer from the DNS server at {where} within {timeout:.0f}s: is the infrastructure started?") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach the DNS server at {where} ({exc.strerror or exc}): is the infrastructure started?") from None
    rcode = response.rcode()
    if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED):
        raise LapinfraError(f"the DNS server at {where} refused the update ({dns.rcode.to_text(rcode)}): wrong TSIG key, "
                            "or a key that may not change this zone (each dynamic zone takes its own tsig-<zone>.key)?")
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXRRSET):
        raise LapinfraError(f"the DNS server at {where} answered {dns.rcode.to_text(rcode)} to the update")
    return rcode


def _tsig_error(exc: dns.tsig.PeerError) -> str:
    return {dns.tsig.PeerBadSignature: "BADSIG", dns.tsig.PeerBadKey: "BADKEY"}.get(type(exc), type(exc).__name__)


# ---- what the tasks call ----------------------------------------------------------------

def _server(project) -> str:
    return str(project.env.master.ip)


def register(project, text: str, ip: str | None = None) -> tuple[Name, str]:
    """``invoke dns.register``: the name's A records replaced by one address."""
    name = parse(text, project.env.domain)
    address = address_for(project.env, name, ip)
    key = project.secrets.tsig_key(name.kind)
    send(update_message(name.zone, key, {name.fqdn: address}), _server(project))
    return name, address


def unregister(project, text: str) -> tuple[Name, bool]:
    """``invoke dns.unregister``: the name's A records deleted; False when it had none."""
    name = parse(text, project.env.domain)
    message = update_message(name.zone, project.secrets.tsig_key(name.kind), {name.fqdn: None})
    message.present(dns.name.from_text(name.fqdn), dns.rdatatype.A)  # NXRRSET, not a silent no-op, when absent
    return name, send(message, _server(project)) == dns.rcode.NOERROR


def transfer(project, zone: str, timeout: float = TIMEOUT) -> dict[str, list[str]]:
    """Every name of ``zone`` -> its addresses (a zone transfer, signed with the transfer key).
    A server that does not answer is Unreachable."""
    data = dns.zone.Zone(zone, relativize=False)
    query = dns.message.make_query(zone, dns.rdatatype.AXFR)
    query.use_tsig(project.secrets.tsig_key())
    try:
        dns.query.inbound_xfr(_server(project), data, query=query, port=PORT, timeout=timeout, lifetime=timeout * 3)
    except dns.exception.Timeout:
        raise Unreachable(f"no answer from the DNS server at {_server(project)}:{PORT} within {timeout:.0f}s") from None
    except dns.exception.DNSException as exc:
        raise LapinfraError(f"zone transfer of {zone} from {_server(project)} failed: {exc}") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach the DNS server at {_server(project)}:{PORT} ({exc.strerror or exc})") from None
    return {owner.to_text(omit_final_dot=True): sorted(r.address for r in rdataset)
            for owner, rdataset in data.iterate_rdatasets(dns.rdatatype.A)}


def registered(project) -> dict[str, list[str]]:
    """Every name of the dynamic zones -> its addresses."""
    out: dict[str, list[str]] = {}
    for zone in project.env.dynamic_zones:
        out.update(transfer(project, zone))
    return dict(sorted(out.items()))


# ---- the nodes' names: facts, decisions, actions --------------------------------------------

def node_zone(env) -> str:
    return f"node.{env.domain}"


def node_names(project) -> dict[str, str]:
    """What node.<domain> must hold: <node>.node.<domain> -> the fixed address of each node that has
    one, and the address each running node without one holds now."""
    return {**project.env.node_records, **Nodes(project).dynamic_records()}


def name_actions(wanted: dict[str, str], held: dict[str, list[str]]) -> list[RegisterName]:
    """The names of ``wanted`` (name -> address) whose A records in ``held`` (name -> addresses, as the
    DNS server holds them) are missing or another (pure: a name that is right takes no action)."""
    return [RegisterName(name, address) for name, address in sorted(wanted.items()) if held.get(name) != [address]]


def apply_names(project, actions: list[RegisterName], timeout: float = TIMEOUT) -> None:
    """Register ``actions``' names in one signed update of node.<domain> (each name's A records replaced)."""
    zone = node_zone(project.env)
    records = {action.name: action.address for action in actions}
    send(update_message(zone, project.secrets.tsig_key("node"), records), _server(project), timeout=timeout)
    project.reporter.info(f"registered in {zone}: " + ", ".join(f"{n} -> {a}" for n, a in records.items()))


NAMES_SECONDS = 5.0     # how long a start, a deploy or node.up waits for the DNS server


def register_nodes(project, expect_down: bool = False, timeout: float = NAMES_SECONDS) -> list[RegisterName] | None:
    """(Re)register <node>.node.<domain> of every node of the environment whose name the DNS server
    lacks or holds with another address (read by a zone transfer first), in one signed update; the
    actions applied (None: the server did not answer or refused). Called when nodes come up, and by
    start and deploy (their phase "names", which plan shows): a DNS server that is not running yet
    or refuses is a warning (with ``expect_down``, not running is just said), never a failure."""
    zone = node_zone(project.env)
    try:
        actions = name_actions(node_names(project), transfer(project, zone, timeout))
        if actions:
            apply_names(project, actions, timeout)
    except LapinfraError as exc:
        later = f"the next `invoke start --env={project.env.name}` or deploy registers them"
        if expect_down and isinstance(exc, Unreachable):
            project.reporter.info(f"node names not registered: the DNS does not run yet; {later}")
        else:
            project.reporter.warn(f"node names not registered in {zone} ({exc}); {later}")
        return None
    if not actions:
        project.reporter.info(f"node names in {zone}: each registered already")
    return actions
