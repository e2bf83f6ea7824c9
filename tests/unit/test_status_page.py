"""The status page's generator (images/status/lapstatus), imported as the container runs it:
facts and lapbackup's state in, the summary and the page out; the server hands out two documents only."""
import html.parser
import json
import threading
import urllib.error
import urllib.request

import pytest

from lapinfra import config, status
from tests.unit import status_fixture as fx

ls = status.lapstatus()


@pytest.fixture
def env(tree):
    return config.load(tree, "test")


def summary_of(env, states=None, failing=(), **backup):
    return ls.summarize(fx.facts(env, states=states, failing=failing), fx.backup(**backup), now=fx.NOW)


def service(summary, name):
    return next(s for s in summary["services"] if s["name"] == name)


# ---- the summary ----------------------------------------------------------------------

def test_a_running_healthy_environment_with_a_green_run_is_all_green(env):
    s = summary_of(env)
    assert s["ok"] and s["red"] == []
    assert s["release"]["release"] == fx.RELEASE
    assert service(s, "trac")["checks"] == 7 and service(s, "trac")["names"] == ["trac.internal"]


def test_a_stopped_container_makes_its_service_red_and_says_why(env):
    s = summary_of(env, states={"infra_trac": ("exited", "")})
    assert s["red"] == ["trac"] and not s["ok"]
    assert service(s, "trac")["reason"] == "container exited"


def test_an_unhealthy_container_is_red_even_while_it_runs(env):
    s = summary_of(env, states={"infra_cd": ("running", "unhealthy")})
    assert s["red"] == ["cd"] and "unhealthy" in service(s, "cd")["reason"]


def test_a_container_whose_first_health_check_is_due_is_not_red_and_shows_it(env):
    """Just restarted (the suite's failover check restarts a backend): Docker says "starting"."""
    s = summary_of(env, states={"infra_app1": ("running", "starting")})
    assert s["red"] == [] and service(s, "app1")["health"] == "starting"


def test_failed_checks_make_their_service_red(env):
    s = summary_of(env, failing=("test_repository::test_repository_check_1",))
    assert s["red"] == ["maven", "artifact"]          # test_repository covers both repositories
    assert s["verification"]["failed"][0]["message"].startswith("AssertionError: repository did not answer")
    assert service(s, "maven")["checks_failed"] == ["test_repository::test_repository_check_1"]


def test_the_load_balancers_checks_belong_to_the_proxy_and_its_backends(env):
    s = summary_of(env, failing=("test_lb::test_lb_check_0",))
    assert s["red"] == ["app1", "app2", "proxy"]


def test_checks_of_an_older_run_are_not_taken_for_the_last_ones(env):
    facts = fx.facts(env, failing=("test_trac::test_trac_check_0",))
    facts["runs"].append({"release": fx.RELEASE, "passed": True, "at": fx.at(10), "counts": {"tests": 97}})
    s = ls.summarize(facts, fx.backup(), now=fx.NOW)
    assert s["verification"]["cases"] == [] and s["red"] == []


def test_the_latest_snapshot_is_the_newest_of_history_and_scheduler_with_its_age(env):
    backup = fx.backup()
    s = ls.summarize(fx.facts(env), backup, now=fx.NOW)
    assert s["backups"]["latest"] == {"id": fx.SNAPSHOT, "at": fx.at(240), "size_bytes": 412_000_000 + 499 * 90_000,
                                      "age_seconds": 240}
    backup["status"].update(snapshot="abcdef12", last_run=fx.at(30))     # a scheduled run newer than history
    backup["sizes"]["abcdef12"] = 7
    assert ls.summarize(fx.facts(env), backup, now=fx.NOW)["backups"]["latest"]["id"] == "abcdef12"
    assert ls.summarize(fx.facts(env), {}, now=fx.NOW)["backups"]["latest"] is None


def test_a_failed_drill_makes_the_environment_need_attention(env):
    s = summary_of(env, drill_ok=False)
    assert not s["ok"] and s["red"] == [] and s["backups"]["drill"]["failures"]


def test_times_with_numeric_offsets_are_read():
    assert ls.parse_time("2026-12-04T05:00:00+0000") == fx.NOW
    assert ls.parse_time("2026-12-04T06:00:00+01:00") == fx.NOW
    assert ls.parse_time("yesterday") is None and ls.parse_time(None) is None


def test_live_states_decide_again(env):
    s = summary_of(env)
    states = {v["container"]: ("running", "healthy") for v in s["services"]}
    states["infra_git"] = ("paused", "")
    live = ls.with_live_states(s, states)
    assert live["red"] == ["git"] and not live["ok"]
    del states["infra_dns"]
    assert service(ls.with_live_states(s, states), "dns")["reason"] == "container missing"


# ---- the page ---------------------------------------------------------------------------

class Structure(html.parser.HTMLParser):
    """Tags balanced, ids collected, scripts counted."""
    VOID = {"meta", "br", "link", "img", "input", "hr", "circle", "line", "polyline", "polygon", "rect"}

    def __init__(self):
        super().__init__()
        self.stack, self.ids, self.tags, self.texts, self.errors = [], {}, [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] = attrs
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.texts.append(data)


def parse(page):
    p = Structure()
    p.feed(page)
    assert not p.errors and not p.stack, (p.errors, p.stack)
    return p


def test_the_page_is_semantic_html_without_javascript_in_both_themes(env):
    page = ls.render_html(summary_of(env))
    p = parse(page)
    assert {"header", "main", "section", "table", "time", "svg", "details"} <= set(p.tags)
    assert "script" not in p.tags and "on" + "click" not in page
    assert 'scope="col"' in page and 'scope="row"' in page
    assert "prefers-color-scheme:dark" in page and "color-scheme:light dark" in page


def test_the_page_shows_release_every_service_and_the_latest_snapshot(env):
    s = summary_of(env, states={"infra_trac": ("exited", "")})
    p = parse(ls.render_html(s))
    text = "".join(p.texts)
    assert fx.RELEASE in text and fx.SNAPSHOT in text
    for v in s["services"]:
        assert f"service-{v['name']}" in p.ids
    assert p.ids["service-trac"]["data-ok"] == "no" and p.ids["service-dns"]["data-ok"] == "yes"
    assert "container exited" in text


def test_realistic_facts_stay_well_under_200_kb(env):
    failing = tuple(f"test_dns::test_dns_check_{i}" for i in range(14))
    page = ls.render_html(summary_of(env, failing=failing)).encode()
    assert len(page) < 200_000, len(page)


def test_without_a_drill_the_page_says_so(env):
    page = ls.render_html(summary_of(env, drill=False))
    assert "no drill yet" in page


def test_an_empty_environment_renders(env):
    page = ls.render_html(ls.summarize({}, {}, now=fx.NOW))
    parse(page)
    assert "Nothing deployed yet" in page and "No verification run recorded yet" in page


def test_text_from_the_facts_is_escaped(env):
    facts = fx.facts(env, failing=("test_trac::test_trac_check_1",))
    facts["cases"]["cases"][0]["message"] = "<script>alert(1)</script>"
    facts["cases"]["cases"][0]["outcome"] = "failed"
    page = ls.render_html(ls.summarize(facts, fx.backup(), now=fx.NOW))
    assert "<script>" not in page and "&lt;script&gt;" in page


# ---- files and server -------------------------------------------------------------------

def write_inputs(tmp_path, env):
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(fx.facts(env)))
    backup = tmp_path / "backup"
    backup.mkdir()
    state = fx.backup()
    (backup / "status.json").write_text(json.dumps(state["status"]))
    (backup / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in state["history"]) + '{"torn')
    return facts, backup


def test_regenerate_writes_summary_and_page_from_the_files(tmp_path, env):
    facts, backup = write_inputs(tmp_path, env)
    doc, page = ls.regenerate(str(facts), str(backup), str(tmp_path / "status.json"), str(tmp_path / "index.html"),
                              now=fx.NOW)
    summary = json.loads((tmp_path / "status.json").read_text())
    assert summary["backups"]["latest"]["id"] == fx.SNAPSHOT and len(summary["backups"]["history"]) == 500
    assert summary["backups"]["drill"] is None
    assert (tmp_path / "index.html").read_bytes() == page and b"no drill yet" in page
    assert not list(tmp_path.glob("*.tmp"))


def test_a_changed_input_changes_the_stats_the_watcher_compares(tmp_path, env):
    facts, backup = write_inputs(tmp_path, env)
    before = ls.input_stats(str(facts), str(backup))
    (backup / "drill.json").write_text(json.dumps({"at": fx.at(5), "ok": True, "snapshot": "12345678"}))
    assert ls.input_stats(str(facts), str(backup)) != before


@pytest.fixture
def server():
    pages = ls.Pages()
    pages.set(b'{"ok": true}', b"<!DOCTYPE html><p>page</p>")
    httpd = ls.http.server.ThreadingHTTPServer(("127.0.0.1", 0), ls.handler_for(pages))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_server_serves_the_page_and_the_summary(server):
    with urllib.request.urlopen(server + "/", timeout=5) as r:
        assert r.read() == b"<!DOCTYPE html><p>page</p>" and r.headers["Content-Type"].startswith("text/html")
    with urllib.request.urlopen(server + "/status.json", timeout=5) as r:
        assert json.load(r) == {"ok": True}


@pytest.mark.parametrize("path", ["/facts.json", "/../backup/status.json", "/etc/passwd", "/index.html/..", "/status.json/x", "/data/index.html"])
def test_the_server_serves_nothing_else(server, path):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + path, timeout=5)
    assert e.value.code == 404


def test_the_watcher_regenerates_on_each_change_and_an_unreadable_input_is_shown_as_missing(tmp_path, env, monkeypatch):
    facts, backup = write_inputs(tmp_path, env)
    monkeypatch.setattr(ls, "SUMMARY", str(tmp_path / "status.json"))
    monkeypatch.setattr(ls, "INDEX", str(tmp_path / "index.html"))
    monkeypatch.setattr(ls, "regenerate", lambda f, b, real=ls.regenerate: real(f, b, ls.SUMMARY, ls.INDEX))
    pages, stop, rounds = ls.Pages(), threading.Event(), []
    assert b"being generated" in pages.get("/")[0]

    def wait(seconds):                       # one round of the loop per call, driven by the test
        rounds.append(pages.get("/")[0])
        if len(rounds) == 1:
            (backup / "drill.json").write_text(json.dumps({"at": fx.at(5), "ok": False, "snapshot": "0badf00d",
                                                           "failures": ["git clone infra: empty"]}))
        elif len(rounds) == 2:
            facts.write_text("{not json")        # unreadable: the summary says less, the page stays up
        else:
            stop.set()
        return stop.is_set()

    monkeypatch.setattr(stop, "wait", wait)
    ls.watch(pages, stop, str(facts), str(backup))
    assert b"no drill yet" in rounds[0]
    assert b"0badf00d" in rounds[1] and b"git clone infra: empty" in rounds[1]
    assert b"Nothing deployed yet" in rounds[2]


def test_a_failed_scheduled_snapshot_or_an_old_latest_one_needs_attention(env):
    backup = fx.backup()
    backup["status"].update(outcome="failed", error="restic backup: repository is locked", snapshot=None)
    s = ls.summarize(fx.facts(env), backup, now=fx.NOW)
    assert not s["ok"] and s["red"] == []
    assert s["backups"]["attention"] == ["the last scheduled snapshot failed: restic backup: repository is locked"]
    assert "repository is locked" in ls.render_html(s)
    old = ls.summarize(fx.facts(env), fx.backup(), now=fx.NOW + 3 * 3600)
    assert old["backups"]["attention"] == ["the latest snapshot is 3 h old (one every 10 min)"] and not old["ok"]
    assert ls.summarize(fx.facts(env), {}, now=fx.NOW)["backups"]["attention"] == ["no snapshot yet"]


def test_facts_of_another_environment_from_a_fetched_snapshot_are_not_shown_as_this_ones(env):
    facts = fx.facts(env)
    facts["environment"] = "prod"
    s = ls.summarize(facts, fx.backup(), now=fx.NOW, environment="test")
    assert s["environment"] == "test" and s["release"] is None and s["services"] == []
    assert s["backups"]["latest"]["id"] == fx.SNAPSHOT              # the backup state is this node's own
    page = ls.render_html(s)
    assert "the published facts are prod&#x27;s" in page and fx.RELEASE not in page
    assert ls.summarize(fx.facts(env), fx.backup(), now=fx.NOW, environment="test")["notice"] is None


def test_the_container_is_told_its_environment(env, monkeypatch, tmp_path):
    from lapinfra import services

    assert services.by_name(env, "status").environment == {"STATUS_ENV": "test"}
    facts, backup = write_inputs(tmp_path, env)
    monkeypatch.setenv("STATUS_ENV", "staging")
    doc, _ = ls.regenerate(str(facts), str(backup), str(tmp_path / "s.json"), str(tmp_path / "i.html"), now=fx.NOW)
    assert json.loads(doc)["notice"].startswith("the published facts are test's")


def test_the_realistic_page_is_served_well_within_100_ms(env):
    """The issue's budget is 100 ms from the LAN: the page is in memory, so loopback takes a few ms."""
    import time

    pages = ls.Pages()
    summary = summary_of(env, states={"infra_trac": ("exited", "")})
    pages.set(json.dumps(summary).encode(), ls.render_html(summary).encode())
    httpd = ls.http.server.ThreadingHTTPServer(("127.0.0.1", 0), ls.handler_for(pages))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        took = []
        for _ in range(10):     # the best of ten: a loaded test machine must not make it flaky
            start = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_address[1]}/", timeout=5) as r:
                assert b'id="service-trac"' in r.read()
            took.append(time.monotonic() - start)
        assert min(took) < 0.1, took
    finally:
        httpd.shutdown()
        httpd.server_close()
