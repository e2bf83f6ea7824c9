"""Rendering: every Jinja template of the project, for one environment.

    images/<name>/templates/*.j2  ->  build/<env>/rendered/<name>/*   (the env volume, /env/<name>/)
    nodes/Vagrantfile.j2          ->  build/<env>/Vagrantfile

One Jinja environment with StrictUndefined: a missing variable is an error that
names the template. Files are only rewritten when their content changes, and the
zone serial only moves when some rendered content does, so rendering an
unchanged tree changes nothing (and recreates no container).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.rdatatype
import dns.zone
import jinja2

from . import services
from .errors import LapinfraError

VAGRANTFILE_TEMPLATE = Path("nodes") / "Vagrantfile.j2"


@dataclass
class Rendered:
    files: dict[Path, str]      # output path -> content
    changed: list[Path]


def jinja(root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,
    )


def templates(root: Path) -> dict[str, Path]:
    """Template (relative to root) -> output path relative to the build folder."""
    out = {}
    for tpl in sorted(root.glob("images/*/templates/**/*.j2")):
        image = tpl.relative_to(root).parts[1]
        rel = tpl.relative_to(root / "images" / image / "templates")
        out[str(tpl.relative_to(root))] = Path("rendered", image, str(rel)[: -len(".j2")])
    if (root / VAGRANTFILE_TEMPLATE).exists():
        out[str(VAGRANTFILE_TEMPLATE)] = Path("Vagrantfile")
    return out


def context(project, serial: int) -> dict:
    env = project.env
    master = str(env.master.ip)
    return {
        "env": env,
        "env_name": env.name,
        "zone_records": env.zone_records,
        "dynamic_zones": env.dynamic_zones,
        "serial": serial,
        "tsig_key_name": project.secrets.tsig_key_name,
        "vhosts": services.vhosts(env),
        "lb": services.load_balancer(env),
        "apt": services.apt_proxy(env),
        "apps": [{"name": name, "host": f"{name}.{env.domain}", "port": app.port} for name, app in env.routed_apps.items()],
        "provider": env.provider,
        "network_name": env.network.name if env.network else "",
        "bridge": env.bridge,
        "node_image": env.node_image,
        "nodes": [
            {
                "name": n.name, "role": n.role, "ip": str(n.ip) if n.ip else "", "memory": n.memory, "cpus": n.cpus, "ssh_port": n.admin_port,
                "container_name": f"lapinfra-{env.name}-{n.name}",
                "data_volume": f"lapinfra-{env.name}-{n.name}-data",
                "docker_volume": f"lapinfra-{env.name}-{n.name}-docker",
                "hosts": {f"docker.{env.domain}": master, f"registry.{env.domain}": master},
                "authorized_keys": str(project.secrets.authorized_keys(n.role).resolve()),
            }
            for n in env.nodes
        ],
    }


def render_all(project) -> Rendered:
    """Render every template into the environment's build folder."""
    root, out_dir = project.root, project.build_dir
    j = jinja(root)
    state_file = out_dir / "state" / "serial.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"hash": "", "serial": 0}
    # the serial moves only when a file that carries it (the zone) changes, not when any file does
    at0, at1 = _render(j, project, 0), _render(j, project, 1)
    serial_bearing = {rel: text for rel, text in at0.items() if at1[rel] != text}
    content_hash = hashlib.sha256(json.dumps(serial_bearing, sort_keys=True).encode()).hexdigest()
    serial = state["serial"]
    if content_hash != state["hash"]:
        serial = max(serial + 1, int(time.strftime("%y%m%d%H%M")))
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps({"hash": content_hash, "serial": serial}))
    files = {out_dir / rel: text for rel, text in _render(j, project, serial).items()}
    changed = []
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)    # atomic: a deploy reading the folder never sees half a file
            changed.append(path)
    _remove_stale(out_dir / "rendered", set(files))
    return Rendered(files, changed)


def _render(j: jinja2.Environment, project, serial: int) -> dict[str, str]:
    ctx = context(project, serial)
    out = {}
    for tpl, rel in templates(project.root).items():
        try:
            out[str(rel)] = j.get_template(tpl).render(ctx)
        except jinja2.UndefinedError as exc:
            raise LapinfraError(f"{tpl}: {exc.message} (no such variable in the rendering context)") from None
        except jinja2.TemplateSyntaxError as exc:
            raise LapinfraError(f"{tpl}:{exc.lineno}: template syntax error: {exc.message}") from None
    return out


def _remove_stale(folder: Path, keep: set[Path]) -> None:
    if folder.exists():
        for path in folder.rglob("*"):
            if path.is_file() and path not in keep:
                path.unlink()


# ---- validation -------------------------------------------------------------

def check_zone(zone_text: str, origin: str, expected: dict[str, str], delegated: list[str] = ()) -> None:
    """The rendered zone parses, holds exactly the expected A records and delegates
    each zone of ``delegated`` (with no A records hidden below a delegation)."""
    try:
        zone = dns.zone.from_text(zone_text, origin=origin + ".", relativize=False, check_origin=True)
    except Exception as exc:  # noqa: BLE001 - dnspython raises many kinds
        raise LapinfraError(f"rendered zone for {origin} does not parse: {exc}") from None
    found = {}
    for name, rdataset in zone.iterate_rdatasets(dns.rdatatype.A):
        found[name.to_text().rstrip(".")] = sorted(r.address for r in rdataset)
    missing = {n: a for n, a in expected.items() if found.get(n) != [a]}
    if missing:
        raise LapinfraError(f"rendered zone for {origin} lacks or misstates: " + ", ".join(f"{n} -> {a}" for n, a in sorted(missing.items())))
    cuts = {name.to_text().rstrip(".") for name, _ in zone.iterate_rdatasets(dns.rdatatype.NS)} - {origin}
    if set(delegated) - cuts:
        raise LapinfraError(f"rendered zone for {origin} does not delegate " + ", ".join(sorted(set(delegated) - cuts)))
    hidden = sorted(n for n in found if any(n.endswith("." + cut) for cut in cuts))
    if hidden:
        raise LapinfraError(f"rendered zone for {origin} has records below a delegation, which it cannot serve: {', '.join(hidden)}")


DYNAMIC_TEMPLATE = "dynamic.zone"  # rendered/dns/: the empty start of every dynamic zone


@dataclass
class Validation:
    checked: list[str]          # what was checked, and passed
    skipped: list[str]          # what could not run here, and why (with what to do about it)


NAMED_CHECKS = "named-checkconf, named-checkzone (in infra/dns)"


def validate(project, rendered: Rendered, need_image: bool = True) -> Validation:
    """Check rendered output; raise on the first rejection.

    The pure checks (dnspython on the zones, ruby -c on the Vagrantfile when ruby
    is installed) always run. bind9's own tools run in the infra/dns image: with
    ``need_image`` (a deploy is about to use the files) a missing image or engine
    is an error; without it (a plain ``render``) the checks are skipped and said so."""
    out = Validation([], [])
    env = project.env
    dns_dir = project.build_dir / "rendered" / "dns"
    zone = dns_dir / "db.zone"
    if zone in rendered.files:
        check_zone(rendered.files[zone], env.domain, env.zone_records, env.dynamic_zones)
        for dynamic in env.dynamic_zones:
            check_zone(rendered.files[dns_dir / DYNAMIC_TEMPLATE], dynamic, {})
        out.checked.append("zone records and delegations, dynamic zones (dnspython)")
        missing = None if need_image else named_checks_unavailable(project)
        if missing:
            out.skipped.append(f"{NAMED_CHECKS}: {missing}")
        else:
            _named_checks(project)
            out.checked.append(NAMED_CHECKS)
    vagrantfile = project.build_dir / "Vagrantfile"
    if vagrantfile in rendered.files:
        if not need_image and shutil.which("ruby") is None:
            out.skipped.append("Vagrantfile syntax (ruby -c): ruby is not installed")
            return out
        run = subprocess.run(["ruby", "-c", str(vagrantfile)], capture_output=True, text=True)
        if run.returncode != 0:
            raise LapinfraError(f"{vagrantfile}: ruby -c failed: {run.stderr.strip()}")
        out.checked.append("Vagrantfile syntax (ruby -c)")
    return out


def named_checks_unavailable(project) -> str | None:
    """Why bind9's checks cannot run here (no engine, no infra/dns image), or None when they can."""
    import docker.errors
    import requests

    try:
        engine = project.docker
        engine.images.get("infra/dns")
    except LapinfraError:
        return "skipped, no Docker engine answers (start dockerd, then `invoke build render`)"
    except docker.errors.ImageNotFound:
        return "skipped, image infra/dns is not built yet (`invoke build render` runs them)"
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return f"skipped, the Docker engine did not answer ({exc.__class__.__name__}; start dockerd, then `invoke build render`)"
    return None


def named_check_command(env, folder: str = "/env/dns") -> str:
    """The shell command that checks the rendered DNS configuration with bind9's tools.
    The dynamic zones' NS (ns.<domain>) is outside them: `-i local` keeps
    named-checkzone from looking it up through the resolver."""
    checks = [f"named-checkconf {folder}/named.conf", f"named-checkzone {env.domain} {folder}/db.zone"]
    checks += [f"named-checkzone -i local {zone} {folder}/{DYNAMIC_TEMPLATE}" for zone in env.dynamic_zones]
    return " && ".join(checks)


def _named_checks(project) -> None:
    import docker.errors

    command = ["sh", "-c", f"({named_check_command(project.env)}) 1>&2"]
    try:
        project.docker.containers.run(
            "infra/dns", command, entrypoint=[], remove=True, network_disabled=True,
            volumes={str(project.build_dir / "rendered"): {"bind": "/env", "mode": "ro"},
                     # the entrypoint copies the keys to /run/named for user bind; checks read them there
                     **{str(project.secrets.path(key)): {"bind": f"/run/named/{key}", "mode": "ro"} for key in services.DNS_KEYS}},
        )
    except docker.errors.ContainerError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip() or str(exc)
        raise LapinfraError(f"named-checkconf/named-checkzone rejected the rendered DNS config:\n{detail}") from None
    except docker.errors.ImageNotFound:
        raise LapinfraError("image infra/dns is missing: run `invoke build` first") from None
