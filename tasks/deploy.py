"""deploy, start, stop, restart, up, and promotion's plan, releases, rollback and unlock."""
import json

from lapinfra.nodes import Nodes

from tasks._common import LOCK_WAIT_HELP, YES_HELP, confirmed, locked, note, noted, project, task
from tasks.images import base, build
from tasks.render import render
from tasks.verify import test


def _report(p, result) -> None:
    changed = {k: v for k, v in result.containers.items() if v != "kept"}
    p.reporter.info(f"release {result.release}: pushed {len(result.pushed)} images, "
                    f"containers changed: {', '.join(f'{k} {v}' for k, v in changed.items()) or 'none'}"
                    + ("; verified" if result.verified else ""))


@task(pre=[build, render], help={"force": "skip the gate (deploy images not verified on the source environment), and push "
                                           "over the target's git branch when it has commits HEAD lacks; warned and recorded",
                                  "lock_wait": LOCK_WAIT_HELP})
def deploy(c, env=None, force=False, lock_wait=0):
    """Deploy the built release: gate, lock, snapshot, push, git, start, verify; roll back on failure.

    Builds and renders first. An environment with `promoted_from` only takes images
    the suite passed on that environment (the gate; --force skips it, recorded).
    The target's git branch master only moves forward: a checkout that lacks its
    commits is refused before anything changes (--force pushes over them, recorded).
    Undo: `invoke rollback` (docs/undo.md).

    Examples:
      invoke deploy --env=staging
      invoke build test deploy --env=staging --yes
      invoke deploy --env=staging --force     (images not verified on test; git pushed over)
    """
    from lapinfra import deploy as deploying

    p = project(c, env)
    with locked(p, "deploy", lock_wait):
        result = deploying.deploy(p, force=force)
    if result.verified:
        note(c, "verified", env)
    _report(p, result)


@task(help={"lock_wait": LOCK_WAIT_HELP})
def start(c, env=None, lock_wait=0):
    """Start the infrastructure: the registry first, then the release's containers from it.

    Starts what the environment's current release names (after `stop`, a reboot).
    After `build` on the same command line (`invoke build start`) it deploys the new
    build instead, to an environment that is not a promotion target.

    Examples:
      invoke start --env=staging
      invoke build start --env=test
    """
    from lapinfra import startstop

    p = project(c, env)
    if noted(c, "built", env):
        if p.env.promoted_from:
            from invoke import Exit

            raise Exit(f"error: {p.name} is promoted from {p.env.promoted_from}: `invoke build deploy --env={p.name}` "
                       f"(gated on the suite) instead of build start", code=1)
        from lapinfra import deploy as deploying

        render(c, env=env)
        with locked(p, "build start", lock_wait):
            _report(p, deploying.deploy(p))
        return
    with locked(p, "start", lock_wait):
        startstop.start(p)


@task(help={"yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def stop(c, env=None, yes=False, lock_wait=0):
    """Remove every infra_* container on the master (selected through the Docker API); /data stays.

    Undo: `invoke start`.

    Examples:
      invoke stop --env=staging
      invoke stop --env=prod --yes
    """
    from lapinfra import startstop

    p = project(c, env)
    confirmed(p, f"stop every service of {p.name} (remove its infra_* containers)", yes, f"invoke stop --env={p.name}")
    with locked(p, "stop", lock_wait):
        startstop.stop(p)


@task(help={"yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def restart(c, env=None, yes=False, lock_wait=0):
    """stop, then start (one lock for both: no other command runs in between).

    Example:
      invoke restart --env=staging
    """
    p = project(c, env)
    confirmed(p, f"restart every service of {p.name} (remove and start its infra_* containers)", yes,
              f"invoke restart --env={p.name}")
    with locked(p, "restart", lock_wait):
        stop(c, env=env, yes=True)
        start(c, env=env)


@task(pre=[base, build, render])
def up(c, env=None):
    """The main job: base image, builds, nodes, deploy and verification, one command.

    The nodes are booted as `node.up` boots them; the swarm and the nodes' DNS names,
    `node.up`'s other steps, are phases of the deploy that follows, so they are read once.

    Undo: `invoke node.down` (docs/undo.md).

    Examples:
      invoke up                   (the test environment)
      invoke up --env=staging
    """
    Nodes(project(c, env)).boot()
    deploy(c, env=env)
    if not noted(c, "verified", env):
        test(c, env=env)
    project(c, env).reporter.info("infrastructure is up and verified")


@task(pre=[build, render], help={"json": "print JSON"})
def plan(c, env=None, json_=False):
    """What a deploy would do (the actions it takes, images to push, containers to recreate or keep, config diff); changes nothing.

    Builds and renders first, like `deploy`. The actions are the very list the deploy
    applies and records (`invoke releases --json`, key `actions`), in its order.

    Examples:
      invoke plan --env=prod
      invoke plan --env=prod --json
    """
    from lapinfra import promote

    p = project(c, env)
    out = promote.plan(p)
    if json_:
        print(json.dumps(out, indent=2))
        return
    print(f"release {out['release']} onto {p.name} (now running {out.get('current') or 'nothing'})")
    print(f"gate: {out['gate']}")
    push = [n for n, v in out["images"].items() if v == "push"]
    print(f"images to push ({len(push)}): {', '.join(push) or 'none'}")
    for name, action in out["containers"].items():
        print(f"  {action:9} {name}")
    print(f"config files that differ: {len(out['config'])}")
    for rel, change in out["config"].items():
        print(f"  {change['change']:7} {rel}")
        print("".join(f"    {line}" for line in change["diff"].splitlines(True)), end="")
    print(f"actions, in the order deploy applies them ({len(out['summary'])}): {'none' if not out['summary'] else ''}")
    for line in out["summary"]:
        print(f"  {line}")


@task(help={"json": "print JSON"})
def releases(c, env=None, json_=False):
    """The environment's deploys and rollbacks (the audit log): commit, images, snapshot, who, when, suite, outcome.

    Examples:
      invoke releases --env=prod
      invoke releases --env=prod --json
    """
    from lapinfra import promote

    entries = promote.releases(project(c, env))
    if json_:
        print(json.dumps(entries, indent=2))
        return
    for e in entries:
        suite = e.get("suite") or {}
        suite_text = ("passed" if suite.get("passed") else "failed") if suite else "-"
        gate = e.get("gate") or {}
        print(f"{e.get('at', '')[:19]:20} {e.get('outcome', ''):12} {e.get('release', '-'):24} "
              f"snapshot {e.get('snapshot') or '-':9} suite {suite_text:6} {'forced ' if gate.get('forced') else ''}by {e.get('by', '-')}"
              + (f"  [{e.get('step')}: {e.get('error')}]" if e.get("error") else ""))


@task(help={"to": "release to go back to (default: the one before the current)",
            "data": "also bring back its /data (shows what that discards, keeps it in a safety snapshot first)",
            "yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def rollback(c, env=None, to="", data=False, yes=False, lock_wait=0):
    """Go back to an earlier release's images and config, keeping today's data (--data: its data too).

    --data replaces /data with the snapshot the release's deploy took, after keeping
    today's /data in a safety snapshot (listed by `invoke snapshot.list`).

    Examples:
      invoke rollback --env=prod
      invoke rollback --env=prod --to=5e1d0c9a7b21 --data --yes
    """
    from lapinfra import promote

    import sys

    from lapinfra import confirm as confirming

    p = project(c, env)
    retry = f"invoke rollback --data --env={p.name}" + (f" --to {to}" if to else "")

    def confirm(summary):
        confirmed(p, f"replace /data of {p.name} with the rollback's snapshot, discarding what was written since", yes, retry)

    if data and confirming.decide(p.env.protected, yes, sys.stdin.isatty()) == confirming.REFUSE:
        confirm([])      # refuses at once, before the lock and the listing of what it would discard
    with locked(p, "rollback", lock_wait):
        entry = promote.rollback(p, to or None, data=data, confirm=confirm)
    kept = "with the snapshot's data" if data else "with today's data"
    p.reporter.info(f"{entry['release']} runs again, {kept} (snapshot {entry['snapshot']})"
                    + (f"; safety snapshot {entry['safety_snapshot']}" if entry.get("safety_snapshot") else ""))


@task(help={"force": "break the lock even when its holder looks alive"})
def unlock(c, env=None, force=False):
    """Show the environment's lock and break it when stale (one left by a killed command).

    Examples:
      invoke unlock --env=staging
      invoke unlock --env=staging --force     (the holder is alive but you know it is stuck)
    """
    from lapinfra import promote

    promote.unlock(project(c, env), force=force)
