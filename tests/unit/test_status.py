"""The status page's facts, published over a stand-in MasterSession (files and Docker engine of the
master as plain data), the status container's mounts, `invoke status`'s lines, lapbackup's history."""
import json
from types import SimpleNamespace

import docker.errors
import pytest

from lapinfra import ddns, records, services, status, verify
from lapinfra.errors import LapinfraError
from tests.unit import status_fixture as fx
from tests.unit.test_lapbackup import load_lapbackup

RELEASE_RECORD = {"release": fx.RELEASE, "deployed_by": "alice", "deployed_at": fx.at(3600),
                  "images": {"dns": {"repository": f"infra/{fx.RELEASE}/dns", "id": "sha256:" + "d" * 64}},
                  "config": {"dns": "0123456789abcdef"}}


def container(name, status_, health=None, env=()):
    state = {"Status": status_, **({"Health": {"Status": health}} if health else {})}
    return SimpleNamespace(name=name, status=status_, labels={},
                           attrs={"State": state, "Config": {"Env": list(env)}})


class Session:
    """A stand-in MasterSession: the master's files by path, its engine's containers."""

    def __init__(self, project, files=None, containers=(), fail_put=False):
        self.p, self.env = project, project.env
        self.files = dict(files or {})
        self.written = {}
        self.fail_put = fail_put
        self.docker = SimpleNamespace(
            containers=SimpleNamespace(list=lambda all=False: list(containers)),
            info=lambda: {"Swarm": {"ControlAvailable": True}},
            nodes=SimpleNamespace(list=lambda: [SimpleNamespace(id="w1", attrs={
                "Description": {"Hostname": "worker1"}, "Spec": {"Role": "worker", "Availability": "active"},
                "Status": {"State": "ready"}})]),
            services=SimpleNamespace(get=self._service))

    def _service(self, name):
        if name != "hello":
            raise docker.errors.NotFound(name)
        tasks = [{"NodeID": "w1", "Status": {"State": "running"}}, {"NodeID": "w1", "Status": {"State": "running"}}]
        return SimpleNamespace(attrs={"Spec": {"Mode": {"Replicated": {"Replicas": 3}}}},
                               tasks=lambda filters=None: tasks)

    def read_json(self, path):
        return self.files.get(path)

    def read_jsonl(self, path):
        return list(self.files.get(path) or [])

    def put(self, path, data, mode=0o600):
        if self.fail_put:
            raise OSError("No space left on device")
        self.written[path] = (json.loads(data), mode)


@pytest.fixture
def names(monkeypatch):
    registered = {"office.host.internal": ["172.28.10.50"], "master.node.internal": ["172.28.10.10"],
                  "alice-smith-notebook.pc.internal": ["172.28.10.200"]}
    monkeypatch.setattr(ddns, "registered", lambda project: registered)
    return registered


def master_files(secret_text):
    return {
        records.RELEASE: RELEASE_RECORD,
        f"{services.STATE_DIR}/releases.jsonl": [
            {"release": f"r{i}", "outcome": "deployed", "by": "alice@ws", "at": fx.at(i)} for i in range(30)] + [
            {"release": fx.RELEASE, "outcome": "failed", "by": "bob@ws", "at": fx.at(1), "step": "push images",
             "error": f"push failed: {secret_text}\nsecond line", "gate": {"token": secret_text}}],
        verify.VERIFIED: [{"release": fx.RELEASE, "passed": True, "partial": False, "by": "alice@ws", "at": fx.at(60),
                           "images": {"dns": "sha256:" + "d" * 64},
                           "counts": {"tests": 97, "failures": 0, "wall_seconds": 16.3, "token": secret_text}}],
        "/data/lapinfra/apps.json": {"hello": {"image": "x", "replicas": 3}},
    }


def test_publish_writes_the_facts_the_page_needs_readable_by_the_status_container(project, names):
    s = Session(project, master_files("nothing"), containers=[
        container("infra_dns", "running", "healthy"), container("infra_trac", "exited"), container("other", "running")])
    facts = status.publish(s, project)
    written, mode = s.written[status.FACTS]
    assert written == facts and mode == 0o644
    assert facts["environment"] == "test" and facts["release"]["release"] == fx.RELEASE
    by_name = {v["name"]: v for v in facts["services"]}
    assert set(by_name) == {v.name for v in services.services(project.env)}
    assert (by_name["dns"]["state"], by_name["dns"]["health"]) == ("running", "healthy")
    assert by_name["trac"]["state"] == "exited" and by_name["git"]["state"] == "missing"
    assert by_name["status"]["names"] == ["status.internal"] and by_name["dns"]["names"] == ["ns.internal"]
    assert len(facts["releases"]) == status.TAIL and facts["releases"][-1]["error"] == "push failed: nothing"
    assert facts["backup"]["keep"]["daily"] == 7
    assert facts["names"]["zones"]["host.internal"] == {"office.host.internal": ["172.28.10.50"]}
    assert facts["swarm"]["apps"] == [{"app": "hello", "replicas": 3, "running": 2, "per_node": {"worker1": 2}}]


def test_the_facts_and_the_page_carry_no_secret(project, names):
    """Every secret file of the project, planted where a careless copy would pick it up
    (a log entry's unknown fields, its error, a container's environment), stays out."""
    secrets = {}
    for path in sorted(project.secrets.dir.iterdir()):
        text = path.read_text(errors="replace").strip()
        if len(text) >= 8:
            secrets[path.name] = text
    assert len(secrets) >= 5, sorted(secrets)
    planted = " ".join(secrets.values())
    s = Session(project, master_files("ok"), containers=[
        container("infra_registry", "running", "healthy", env=[f"REGISTRY_PASSWORD={planted}"])])
    files = s.files
    files[f"{services.STATE_DIR}/releases.jsonl"][-1]["gate"] = {"token": planted}
    files[verify.VERIFIED][0]["counts"]["token"] = planted
    files[verify.VERIFIED][0]["password"] = planted
    cases = fx.cases(failing=("test_hardening::test_hardening_check_1",))
    quoted = next(c for c in cases if c["outcome"] == "failed")
    quoted["message"] = f"AssertionError: assert login('admin', {secrets['cd.admin-password']!r})"
    facts = status.publish(s, project, run=files[verify.VERIFIED][0], cases=cases)
    assert "assert login('admin', '***')" in json.dumps(facts)
    page = status.lapstatus().render_html(status.lapstatus().summarize(facts, fx.backup(), now=fx.NOW))
    published = json.dumps(facts)
    for name, text in secrets.items():
        for line in [text, *text.splitlines()]:
            if len(line.strip()) >= 8 and not line.startswith("-----"):
                assert line.strip() not in published, f"{name} is in facts.json"
                assert line.strip() not in page, f"{name} is on the page"


def test_a_run_publishes_its_checks_and_later_publishes_keep_them(project, names):
    s = Session(project, master_files("x"))
    run = s.files[verify.VERIFIED][0]
    facts = status.publish(s, project, run=run, cases=fx.cases(failing=("test_dns::test_dns_check_0",)))
    assert facts["cases"]["at"] == run["at"] and len(facts["cases"]["cases"]) == 97
    s.files[status.FACTS] = facts
    again = status.publish(s, project)          # a deploy afterwards: no run of its own
    assert again["cases"] == facts["cases"]
    summary = status.lapstatus().summarize(again, {}, now=fx.NOW)
    assert "dns" in summary["red"]


def test_a_failed_publish_is_one_warning_and_never_an_error(project, names):
    s = Session(project, master_files("x"), fail_put=True)
    assert status.publish_quietly(s, project) is False
    assert project.reporter.lines == [
        "! status page not updated on test (No space left on device); the next deploy or `invoke test --env=test` publishes again"]


def test_unreachable_dns_leaves_the_names_out_with_the_reason(project, monkeypatch):
    def refuse(project):
        raise LapinfraError("cannot reach the DNS server at 172.28.10.10:53 (Connection refused)")
    monkeypatch.setattr(ddns, "registered", refuse)
    facts = status.gather(Session(project, master_files("x")), project)
    assert facts["names"] == {"error": "cannot reach the DNS server at 172.28.10.10:53 (Connection refused)"}


def test_record_run_publishes_the_run_with_each_check_from_the_junit_report(project, names, monkeypatch):
    s = Session(project, master_files("x"), containers=[container("infra_dns", "running", "healthy")])
    monkeypatch.setattr(verify, "MasterSession", lambda p: _Ctx(s))
    s.append_jsonl = lambda path, entry: s.files.setdefault(path, []).append(entry)
    project.build_dir.mkdir(parents=True, exist_ok=True)
    (project.build_dir / "junit.xml").write_text(
        '<testsuites><testsuite tests="2" failures="1"><testcase classname="infra_tests.test_trac" name="test_ticket" time="1.5">'
        '<failure message="trac answered 502"/></testcase><testcase classname="infra_tests.test_dns" name="test_a" time="0.1"/>'
        '</testsuite></testsuites>')
    entry = verify.record_run(project, False, {"tests": 2, "failures": 1}, partial=False)
    facts, _ = s.written[status.FACTS]
    assert facts["runs"][-1]["at"] == entry["at"] and facts["cases"]["at"] == entry["at"]
    assert facts["cases"]["cases"][0] == {"check": "test_trac::test_ticket", "outcome": "failed", "seconds": 1.5,
                                          "message": "trac answered 502"}
    assert status.lapstatus().summarize(facts, {}, now=fx.NOW)["red"][:2] == ["registry", "environment"]


class _Ctx:
    def __init__(self, s):
        self.s = s

    def __enter__(self):
        return self.s

    def __exit__(self, *exc):
        return False


# ---- the container ------------------------------------------------------------------------

def test_the_status_container_reads_backup_state_read_only_and_nothing_secret(project):
    env = project.env
    names = [s.name for s in services.services(env)]
    assert names.index("status") == names.index("proxy") - 1    # the proxy resolves infra_status when it starts
    spec = services.by_name(env, "status")
    volumes = services.run_kwargs(spec, "ref", env, "", "sha256:1")["volumes"]
    assert volumes == {"/data/status": {"bind": "/data", "mode": "rw"},
                       "/data/backup": {"bind": "/backup", "mode": "ro"}}
    assert not spec.secrets and not spec.ports
    assert {"name": "status.internal", "upstream": "infra_status:8020"} in [
        {k: v[k] for k in ("name", "upstream")} for v in services.vhosts(env)]
    assert env.dns_records["status.internal"] == str(env.master.ip)


def test_the_status_image_is_built_like_the_others(project):
    from lapinfra.images import ImageGraph

    graph = ImageGraph.discover(project.root, project.env.base_image.tag)
    assert "status" in graph.specs and graph.parents_of("status") == []   # FROM infra/base
    dockerfile = (project.root / "images/status/Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "8020" in dockerfile


# ---- invoke status --------------------------------------------------------------------------

def test_the_terminal_table_names_red_services_and_colours_only_when_asked(project):
    ls = status.lapstatus()
    summary = ls.summarize(fx.facts(project.env, states={"infra_trac": ("exited", "")}), fx.backup(), now=fx.NOW)
    plain = status.table_lines(summary)
    assert not any("\033[" in line for line in plain)
    trac = next(line for line in plain if line.split()[1:2] == ["trac"])
    assert trac.startswith("RED") and "container exited" in trac
    assert any(line.startswith("ok  dns") for line in plain)
    assert any(f"latest snapshot {fx.SNAPSHOT}, 4 min ago" in line for line in plain)
    assert any("app hello" in line and "worker1: 1, worker2: 1" in line for line in plain)
    assert any("\033[31m" in line for line in status.table_lines(summary, colour=True))


def test_invoke_status_prints_json_for_scripts(project, monkeypatch, capsys):
    import tasks.status as task_module

    summary = status.lapstatus().summarize(fx.facts(project.env), fx.backup(), now=fx.NOW)
    monkeypatch.setattr(task_module, "project", lambda c, env: project)
    monkeypatch.setattr(status, "current", lambda p: summary)
    task_module.status.body(None, env="test", json_=True)
    assert json.loads(capsys.readouterr().out)["release"]["release"] == fx.RELEASE


def test_without_a_summary_on_the_node_it_is_computed_with_the_generators_functions(project, names):
    s = Session(project, master_files("x"), containers=[container("infra_dns", "running", "healthy")])
    s.files[f"{status.BACKUP_STATE}/status.json"] = {"last_run": fx.at(30), "outcome": "ok", "snapshot": "aa11bb22"}
    summary = status.local_summary(s, project)
    assert summary["backups"]["latest"]["id"] == "aa11bb22" and summary["release"]["release"] == fx.RELEASE


# ---- lapbackup's history ----------------------------------------------------------------------

def test_each_snapshot_adds_a_history_line_and_the_file_stays_bounded(tmp_path, monkeypatch):
    lapbackup = load_lapbackup(tmp_path, monkeypatch, data=tmp_path)
    monkeypatch.setattr(lapbackup, "HISTORY", str(tmp_path / "backup/history.jsonl"))
    monkeypatch.setattr(lapbackup, "HISTORY_LINES", 3)
    for i in range(5):
        lapbackup.append_history(f"{i:08x}", fx.at(100 - i), 1000 + i, 10)
    lines = [json.loads(line) for line in (tmp_path / "backup/history.jsonl").read_text().splitlines()]
    assert [line["snapshot"] for line in lines] == ["00000002", "00000003", "00000004"]
    assert [line["repo_bytes"] for line in lines] == [30, 40, 50]
    assert lines[-1] == {"at": fx.at(96), "snapshot": "00000004", "size_bytes": 1004, "data_added": 10, "repo_bytes": 50}
    page = status.lapstatus().read_jsonl(str(tmp_path / "backup/history.jsonl"))
    assert page == lines


# ---- who publishes ----------------------------------------------------------------------------

from tests.unit.test_promote import failing_deploy, node  # noqa: E402,F401  (fixtures: a stand-in master)


@pytest.fixture
def published(monkeypatch):
    calls = []
    monkeypatch.setattr(status, "publish", lambda s, p, run=None, cases=None: calls.append((s, run)))
    return calls


def test_a_rollback_publishes_after_it_is_recorded(node, published):
    entry = promote_rollback(node)
    assert published == [(node.session, None)] and node.session.appended == [entry]


def test_a_rolled_back_deploy_publishes_what_runs_again(failing_deploy, published):
    from lapinfra import deploy

    with pytest.raises(LapinfraError, match="rolled back"):
        deploy.deploy(failing_deploy.project)
    assert published == [(failing_deploy.session, None)]
    assert failing_deploy.session.appended[-1]["outcome"] == "rolled back"


def test_a_failing_publish_never_fails_the_rollback(node, monkeypatch):
    def broken(s, p, run=None, cases=None):
        raise OSError("sftp: permission denied")

    monkeypatch.setattr(status, "publish", broken)
    entry = promote_rollback(node)
    assert entry["outcome"] == "rolled back"
    assert "! status page not updated on staging (sftp: permission denied); the next deploy or " \
           "`invoke test --env=staging` publishes again" in node.project.reporter.lines


def promote_rollback(node):
    from lapinfra import promote

    return promote.rollback(node.project)
