"""The service set: start order, names, proxy routes, secrets that exist."""
from lapinfra import config, services
from lapinfra.secrets import SecretStore


def test_registry_starts_first_and_the_proxy_after_its_backends(tree):
    env = config.load(tree, "test")
    all_ = services.services(env)
    names = [s.name for s in all_]
    assert names[0] == "registry"
    assert names.index("environment") < names.index("dns")
    backends = [s.name for s in all_ if s.http]
    assert all(names.index(b) < names.index("proxy") for b in backends)


def test_every_container_is_infra_prefixed_and_unique(tree):
    containers = [s.container for s in services.services(config.load(tree, "test"))]
    assert len(set(containers)) == len(containers)
    assert all(c.startswith("infra_") for c in containers)


def test_proxy_routes_the_http_services_by_name(tree):
    env = config.load(tree, "test")
    routes = {v["name"]: v["upstream"] for v in services.vhosts(env)}
    assert routes == {"trac.internal": "infra_trac:8000", "cd.internal": "infra_cd:8010",
                      "maven.internal": "infra_maven:80", "artifact.internal": "infra_artifact:80",
                      "status.internal": "infra_status:8020", "ubuntu.cache.internal": "infra_cache:3142"}
    assert set(routes) <= set(env.dns_records), "every routed name is in the zone"
    lb = services.load_balancer(env)
    assert lb == {"name": "app.internal", "backends": ["infra_app1:8080", "infra_app2:8080"]}
    assert lb["name"] in env.dns_records


def test_every_secret_a_service_mounts_is_generated(tree):
    env = config.load(tree, "test")
    store = SecretStore(tree, env)
    store.ensure()
    for service in services.services(env):
        for source in service.secrets.values():
            if source in ("backup_known_hosts", "git_known_hosts"):  # written at deploy from the backup
                continue                                                # node's pinned key, the git server's
            assert store.path(source).is_file(), f"{service.name} mounts {source}"


def test_spec_hash_moves_with_config_and_image_only(tree):
    env = config.load(tree, "test")
    svc = services.by_name(env, "dns")
    base = services.run_kwargs(svc, "ref:a", env, "cfg1", "sha256:1")["labels"][services.SPEC_LABEL]
    assert services.run_kwargs(svc, "ref:b", env, "cfg1", "sha256:1")["labels"][services.SPEC_LABEL] == base
    assert services.run_kwargs(svc, "ref:a", env, "cfg2", "sha256:1")["labels"][services.SPEC_LABEL] != base
    assert services.run_kwargs(svc, "ref:a", env, "cfg1", "sha256:2")["labels"][services.SPEC_LABEL] != base


def test_each_container_has_its_own_fixed_address(tree):
    env = config.load(tree, "test")
    addresses = [services.address(env, s) for s in services.services(env)]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("172.31.254.") for a in addresses)


def test_the_backup_freezes_exactly_the_services_that_write_in_place(tree):
    """Trac's and Buildbot's databases and bind9's dynamic zones and journals are copied
    paused; registry, git, Maven/artifact files (written by rename) are read live."""
    import json
    env = config.load(tree, "test")
    freeze = json.loads(services.by_name(env, "backup").environment["BACKUP_FREEZE"])
    assert freeze == {"infra_cd": ["cd/master/state.sqlite*"], "infra_dns": ["dns/dynamic"],
                      "infra_trac": ["trac/env/db"]}
    assert services.backup_service(env).environment == services.by_name(env, "backup").environment   # the one-off tool too
