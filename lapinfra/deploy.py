"""The deploy: a release of this checkout onto an environment, as one safe command.

``invoke build test deploy --env=prod``:

1. gate      on an environment promoted from another (``promoted_from: test``), the exact
             images of the release passed the verification suite there (promote.check_gate);
             ``--force`` skips this and is recorded
2. lock      one writer per environment (promote.env_lock, lapinfra/lock.py)
3. snapshot  the target's ``/data`` on its backup node (a promotion target)
4. phases    phases.deploy_steps, each phase deciding on its facts and applied by the one
             executor, which records its actions: push the release (config, secrets, the
             master's own images, the registry, the images it lacks), the git push, the
             release record, start (the swarm, the pulls, each container whose image or
             config changed, the health checks, the apps, the nodes' names), the git push
             of a first deploy
5. verify    the suite on the target (a promotion target)

A failure after the snapshot first takes a safety snapshot (the data users wrote
during the deploy, named in the error), then restores the pre-deploy snapshot
(images and data: the registry is part of ``/data``) and starts the previous
release, through the same session. Every deploy is appended to ``releases.jsonl``
(records.RELEASES) with the actions it applied. Environments without ``promoted_from``
(``test``) get the lock and the audit log only: they are where releases are tried first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import backup, gitpush, records, services as svc, status, verify
from .actions import PushGit, PushImage, as_json
from .errors import LapinfraError
from .executor import Executor
from .gitinfo import release_id
from .phases import (GitPush, Target, apply_phases, built_images, config_files, deploy_steps, ensure_infra_network, release_record,
                     seed_images, started)
from .promote import check_gate, env_lock, safety_note, safety_snapshot
from .records import Release
from .session import MasterSession

RELEASES = records.RELEASES


@dataclass
class DeployResult:
    release: str
    pushed: list[str] = field(default_factory=list)
    containers: dict[str, str] = field(default_factory=dict)
    config_changed: list[str] = field(default_factory=list)
    verified: bool = False       # the suite ran on the target as part of the deploy (and passed)


class Step:
    """The step a deploy is in, for the message when it fails."""

    def __init__(self):
        self.name = "start"

    def __call__(self, name: str) -> None:
        self.name = name


def deploy(project, force: bool = False) -> DeployResult:
    """Gate, lock, snapshot, the phases of deploy_steps, verify; roll back on failure."""
    env, rep = project.env, project.reporter
    gated = bool(env.promoted_from)
    release = release_id(project.root)
    images = built_images(project)
    files = config_files(project)
    seeds = seed_images(project)
    gate = check_gate(project, release, images, force)
    record = release_record(project, release, images, files)
    result = DeployResult(release)
    began = time.monotonic()
    entry = {"release": release, "images": {n: i.id for n, i in images.items()}, "gate": gate,
             "by": verify.who(), "at": verify.now(), "snapshot": None, "suite": None}
    with MasterSession(project) as s, env_lock(s, project):
        executor = Executor(rep, s)      # applies each phase's actions and records them (entry["actions"])
        target = Target(project, record, s.registry_host, images, files, seeds, force=force)
        backup.recover_interrupted(s, project)   # an interrupted restore: finished or undone first
        previous = records.running(s)
        entry["previous"] = previous
        # a push that would drop the target's commits: refused before any change; the early git push
        # decides on the same facts (nothing else pushes to the git server while the deploy holds the lock)
        executor.found[GitPush.name] = gitpush.check_git(s, project, force)
        step = Step()
        suite_run = None      # the verification run recorded on the target, for the status page
        try:
            if gated:
                step("snapshot")
                snap = backup.snapshot_in(s, project, label=f"pre-deploy {release[:12]}")
                entry["snapshot"] = snap["id"]
            steps = deploy_steps(env)
            step(steps[0][0])
            ensure_infra_network(s.docker)
            for name, phases in steps:
                step(name)
                apply_phases(s, target, phases, executor)
            summarize(result, executor.applied, env)
            entry.update(git_entry(executor.applied, executor.found.get("git push")))
            if gated:
                step("verification suite")
                passed, counts = verify.run_suite(project)
                entry["suite"] = {"passed": passed, **counts}
                suite_run = _record_suite(s, target.record, passed, counts)
                if not passed:
                    raise LapinfraError(f"the verification suite failed on {env.name} "
                                        f"({counts.get('failures', 0)} failed, {counts.get('errors', 0)} errors; "
                                        f"report: {project.build_dir / 'junit.xml'})")
        except (Exception, KeyboardInterrupt) as exc:
            entry.update(step=step.name, error=str(exc).splitlines()[0][:500], seconds=round(time.monotonic() - began, 1),
                         actions=as_json(executor.applied))
            if entry["snapshot"] is None:
                entry["outcome"] = "failed"
                s.append_jsonl(RELEASES, entry)
                status.publish_quietly(s, project)
                raise
            roll_back(s, project, entry, exc, previous, step.name)
            status.publish_quietly(s, project, run=suite_run, cases=verify.last_cases(project) if suite_run else None)
            raise LapinfraError(f"deploy of {release} to {env.name} failed at {step.name}: {exc}\n"
                                f"rolled back: {env.name} runs {previous or 'nothing'} again, with /data of snapshot "
                                f"{entry['snapshot']}; {safety_note(entry['safety_snapshot'])} "
                                f"(`invoke releases --env={env.name}`)") from None
        entry.update(outcome="deployed", seconds=round(time.monotonic() - began, 1),
                     pushed=result.pushed, containers=result.containers, actions=as_json(executor.applied))
        s.append_jsonl(RELEASES, entry)
        status.publish_quietly(s, project, run=suite_run, cases=verify.last_cases(project) if suite_run else None)
    result.verified = gated
    return result


def roll_back(s: MasterSession, project, entry: dict, exc: BaseException, previous: str | None, step: str) -> None:
    """After a failed deploy: a safety snapshot of the data written meanwhile, then the pre-deploy
    snapshot restored and the previous release started, through the deploy's session; the entry
    appended to releases.jsonl, with the actions of the rollback's start (``rollback_actions``).
    LapinfraError when either fails (the entry says so)."""
    env, rep, release = project.env, project.reporter, entry["release"]
    rep.warn(f"deploy of {release} failed at {step}: rolling back to "
             f"{previous or 'nothing deployed'} (snapshot {entry['snapshot']})")
    try:
        entry["safety_snapshot"] = safety_snapshot(s, project, f"failed deploy {release[:12]}")
    except Exception as again:
        entry.update(outcome="failed", rollback_error=f"no safety snapshot: {str(again).splitlines()[0][:500]}")
        s.append_jsonl(RELEASES, entry)
        raise LapinfraError(f"deploy of {release} to {env.name} failed at {step}: {exc}\n"
                            f"and the safety snapshot of the data written since snapshot {entry['snapshot']} "
                            f"failed too ({again}): nothing was rolled back, {env.name} keeps its data. "
                            f"`invoke rollback --data --env={env.name}` once a snapshot can be taken") from None
    rep.info(safety_note(entry["safety_snapshot"]))
    undo = Executor(rep, s)    # the rollback's start, recorded apart from the deploy's actions
    try:
        backup.restore_in(s, project, entry["snapshot"], start=previous is not None, safety=False,  # taken above
                          executor=undo)
    except Exception as again:
        entry.update(outcome="failed", rollback_error=str(again).splitlines()[0][:500],
                     rollback_actions=as_json(undo.applied))
        s.append_jsonl(RELEASES, entry)
        raise LapinfraError(f"deploy of {release} to {env.name} failed at {step}: {exc}\n"
                            f"and the rollback to snapshot {entry['snapshot']} failed too: {again}") from None
    entry.update(outcome="rolled back", rollback_actions=as_json(undo.applied))
    s.append_jsonl(RELEASES, entry)


def summarize(result: DeployResult, applied: list, env) -> None:
    """The deploy's result from the actions it applied: the config files written or removed, the
    images pushed, what its start did to each service's container."""
    result.config_changed = [a.path for a in applied if getattr(a, "folder", None) == svc.ENV_DIR]
    result.pushed = [a.name for a in applied if isinstance(a, PushImage)]
    changed = started(applied)
    result.containers = {service.name: changed.get(service.container, "kept") for service in svc.services(env)}


def git_entry(applied: list, found) -> dict:
    """What the release entry says of the git push: the commit the target's branch holds (None: its
    git server did not run), and the commit a forced push dropped. ``found``: the git facts the
    last git push phase decided on (the executor's)."""
    pushed = [action for action in applied if isinstance(action, PushGit)]
    out = {"git": (pushed[-1].commit if pushed else found.head if found and found.branch == found.head else None)}
    if out["git"]:
        out["git"] = out["git"][:12]
    if pushed and pushed[-1].over:
        out["git_forced_over"] = pushed[-1].over
    return out


def _record_suite(s: MasterSession, record: Release, passed: bool, counts: dict) -> dict:
    entry = verify.run_entry(record, passed, counts)
    s.append_jsonl(verify.VERIFIED, entry)
    return entry
