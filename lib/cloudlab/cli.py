"""The ``cloudlab`` command: doctor, services, images, engine, run, grade, k8s, manifests,
hub, cleanup.

>>> main(["services", "status"])             # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .errors import CloudlabError


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    report = doctor.check()
    print(report.table())
    return 0 if report.ok else 1


def _services(args: argparse.Namespace) -> int:
    from . import services

    if args.action == "up":
        for svc in services.up(args.names):
            print(f"{svc.name:<13} up at {svc.url} (pid {svc.pid()}, log {svc.log})")
    elif args.action == "down":
        services.down(args.names)
        print("stopped: " + ", ".join(args.names or services.SERVICES))
    else:
        rows = services.status(args.names)
        print(f"{'service':<13} {'state':<8} {'pid':>7}  url")
        for st in rows:
            state = "healthy" if st.healthy else ("starting" if st.running else "stopped")
            print(f"{st.name:<13} {state:<8} {st.pid or '-':>7}  {st.url}")
    return 0


def _images(args: argparse.Namespace) -> int:
    from . import images

    image = images.bootstrap(args.tag)
    print(f"{image.tag}: {image.source}")
    return 0


def _engine(args: argparse.Namespace) -> int:
    from . import engine

    if args.action == "up":
        print(f"Docker Engine {engine.up()} answers")
        return 0
    found = engine.version()
    print(f"Docker Engine {found} answers" if found else f"no engine: {engine.start_hint()}")
    return 0 if found else 1


def _run(args: argparse.Namespace) -> int:
    from . import runner

    params = {"ci": not args.full}
    started = time.monotonic()
    results = runner.run_all(args.notebooks, params, progress=not args.quiet and args.jobs == 1,
                             jobs=args.jobs)
    print()
    print(runner.summary(results, wall=time.monotonic() - started))
    failed = [r for r in results if r.status != "passed"]
    for r in failed:
        print(f"\nFAILED {r.notebook}: {r.error}\n  executed copy: {r.output}", file=sys.stderr)
    return 1 if failed else 0


def _grade(args: argparse.Namespace) -> int:
    from .grading import Course

    course = Course(args.course)
    if args.action == "release":
        from .grading.release import release

        names = release(course, args.assignment)
        print(f"released {len(names)} assignment(s) into {course.release}: "
              f"{', '.join(names) or 'none (no folders in solutions/)'}")
        if args.classmate:
            from .grading import classmate

            print(f"published the classmate's image: {classmate.publish(course)}")
        return 0
    if args.action == "registry":
        from .grading.roster import course_registry

        registry, auth = course_registry(course)
        if args.state == "up":
            auth.start()
            registry.start()
            print(f"course registry at {registry.url} (accounts from the roster; tokens from "
                  f"{auth.url})")
        else:
            registry.stop()
            auth.stop()
            print("course registry stopped")
        return 0
    if args.action == "collect":
        from .grading.collect import collect

        report = collect(course, args.path, args.assignment)
        print(report.text())
        return 0
    if args.action == "autograde":
        from .grading import autograde as ag
        from .grading.sandbox import Limits

        limits = Limits(memory=args.memory, cpus=args.cpus, pids=args.pids)
        backend = None
        if args.on == "kubernetes":
            from .grading.kubejobs import Backend, default_kubeconfig

            backend = Backend(kubeconfig=args.kubeconfig or default_kubeconfig(),
                              context=args.context, namespace=args.namespace)
        results = ag.autograde(course, args.assignment, students=args.student or None,
                               workers=args.parallel or args.workers, timeout=args.timeout,
                               limits=limits, progress=not args.quiet, backend=backend)
        if not results:
            print("no submissions to grade (collect them first: cloudlab grade collect PATH)")
            return 0
        print(ag.summary(results))
        if backend is not None:
            print(backend.describe())
        print(f"(also in {ag.write_summary(course, results)})")
        return 0
    if args.action == "export":
        return _export(course, args)
    if args.action == "report":
        from .grading.report import write

        page, data = write(course, args.assignment, args.output)
        print(f"wrote {page} (data: {data})")
        return 0
    if args.action == "regrade":
        return _regrade(course, args)
    if args.action == "similar":
        from .grading.similarity import similar

        pairs = similar(course, args.assignment, threshold=args.threshold)
        print("\n".join(p.line() for p in pairs) or "no pair stands out")
        print("(a list to look at, never a verdict: read the answers before concluding)")
        return 0
    if args.action == "late":
        from .grading.late import path, policy

        found = policy(course, args.assignment)
        print(f"{args.assignment}: due {found.due or 'no due date'}; {found.text()} "
              f"(from {path(course)})")
        return 0
    if args.action == "publish":
        from .grading.publish import publish

        print(publish(course, args.dest, push=args.push).text())
        return 0
    if args.action == "roster":
        from .grading.roster import generate

        print(generate(course, args.roster, instructor=args.instructor).text())
        return 0
    if args.action == "feedback":
        from .grading.feedback import feedback

        files = feedback(course, args.assignment, args.student or None)
        print(f"wrote {len(files)} feedback file(s) under {course.feedback}")
        return 0
    from .grading.validate import validate

    failed = 0
    for notebook in args.notebooks:
        report = validate(notebook, timeout=args.timeout)
        print(report.text())
        failed += not report.ok
    return 1 if failed else 0


def _export(course, args: argparse.Namespace) -> int:
    if args.lms:
        from .grading import lms

        if not args.assignment or not args.roster:
            print("error: an LMS export needs an ASSIGNMENT and --roster FILE", file=sys.stderr)
            return 2
        out = args.output or course.state / f"{args.assignment}-{args.lms}.csv"
        path = lms.export(course, args.assignment, args.roster, args.lms, out, items=args.items)
    else:
        from .grading.export import export

        path = export(course, args.output or course.state / "grades.csv", args.assignment)
    print(f"wrote {path}")
    return 0


def _regrade(course, args: argparse.Namespace) -> int:
    from .grading.regrade import regrade
    from .grading.sandbox import Limits

    plan = regrade(course, args.assignment, apply=args.apply, never_lower=args.never_lower,
                   students=args.student or None, workers=args.workers, timeout=args.timeout,
                   limits=Limits(memory=args.memory, cpus=args.cpus, pids=args.pids),
                   progress=not args.quiet)
    print(plan.text())
    return 0


def _k8s(args: argparse.Namespace) -> int:
    from . import k8s
    from .config import settings

    if args.action == "install":
        result = k8s.install.install(official=not args.from_source,
                                     node=not args.no_node and sys.platform == "linux")
        print(result)
        return 0
    if args.action == "up":
        cluster = k8s.Cluster(args.backend, nodes=args.nodes, kubeconfig=args.kubeconfig,
                              name=args.names[0] if args.names else None,
                              grading=args.grading, real_nodes=int(args.real_node)).start()
        print(f"cluster {cluster.name} ({args.backend}) up in {cluster.up_seconds:.1f} s, "
              f"Kubernetes {cluster.version()}")
        if cluster.node is not None:
            print(f"  real node {cluster.node.name}: pods {cluster.node.plan.pod_cidr} on "
                  f"bridge {cluster.node.bridge}, Services {cluster.node.plan.service_cidr}, "
                  f"DNS {cluster.node.plan.dns}; load images with "
                  f"`docker save IMAGE | ctr --address {cluster.node.socket} -n k8s.io "
                  "images import -`")
        print(f"  export KUBECONFIG={cluster.kubeconfig}")
        print(f"  stop it with: cloudlab k8s down {cluster.name}")
        return 0
    if args.action == "down":
        if args.names:
            for name in args.names:
                if name not in k8s.clusters():
                    known = ", ".join(k8s.clusters()) or "none"
                    print(f"error: no cloudlab cluster named {name!r} (known: {known})",
                          file=sys.stderr)
                    return 1
                k8s.down(name)
                print(f"deleted {name}")
        else:
            print(f"deleted {k8s.sweep()} cluster(s)")
        return 0
    for backend, avail in k8s.available().items():
        print(f"{backend:<11} {'available' if avail else 'unavailable':<12} {avail.reason}")
    rec = k8s.install.record()
    if rec:
        print(f"binaries: {', '.join(f'{k} {v}' for k, v in rec['versions'].items())} "
              f"({rec.get('when', '?')})")
    cfg = settings()
    for name in k8s.clusters():
        procs = k8s.kwok.processes(cfg, name)
        up = sum(p.running for p in procs)
        print(f"\ncluster {name}: {up}/{len(procs)} processes running")
        for p in procs:
            print(f"  {p}")
    owner = k8s.node.running_owner()
    if owner:
        print(f"\nreal node {owner['node']} of cluster {owner['cluster']} (run "
              f"{owner['run_id']}), bridge {owner['bridge']}:")
        for comp, pid in owner.get("pids", {}).items():
            print(f"  {comp:<24} pid {pid:<7} {'running' if k8s.node.alive(pid) else 'exited'}")
    return 0
def _manifests(args: argparse.Namespace) -> int:
    from . import manifests

    report = manifests.validate(args.files, version=args.version, kubeconfig=args.kubeconfig,
                                context=args.context)
    print(report if not report.ok else f"{len(args.files)} file(s): no problems "
          f"(schemas of Kubernetes {args.version}, semantic checks"
          f"{', server dry run' if args.kubeconfig else ''})")
    return 0 if report.ok else 1


def _hub(args: argparse.Namespace) -> int:
    from . import hub
    from .grading import Course

    h = hub.Hub(Course(args.course) if args.course else None, args.roster,
                course_id=args.course_id, prefix=args.prefix, instructor=args.instructor)
    if args.action == "up":
        h.up()
        print(f"course hub at {h.url} (log {h.log})")
        print(f"accounts and passwords (hand them out): {h.passwords_file}")
        print(f"nbgrader exchange: {h.exchange}; the instructor's course: {h.course_dir}")
        return 0
    if args.action == "down":
        h.stop()
        print("course hub stopped; its accounts, group and folders removed")
        return 0
    st = h.status()
    if not st["state"] or not st["course"]:
        print("no course hub here (cloudlab hub up --roster FILE)")
        return 1
    print(f"{'running' if st['running'] else 'not running'} {st['url']} (pid {st['pid']})")
    for name, role in sorted(st["accounts"].items()):
        print(f"  {role:<10} {name}")
    return 0 if st["running"] else 1


def _cleanup(args: argparse.Namespace) -> int:
    from . import cleanup

    counts = cleanup.sweep(args.run_id, stop_services=not args.keep_services)
    print("removed: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudlab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("doctor", help="what is installed, what is missing, how to fix it")
    d.set_defaults(func=_doctor)

    s = sub.add_parser("services", help="start/stop/inspect the local stand-in services")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("names", nargs="*", help="moto, registry, prometheus, alertmanager")
    s.set_defaults(func=_services)

    i = sub.add_parser("images", help="base images")
    i.add_argument("action", choices=["bootstrap"])
    i.add_argument("tag", nargs="?", help="default: the configured base image")
    i.set_defaults(func=_images)

    e = sub.add_parser("engine", help="the Docker engine")
    e.add_argument("action", choices=["up", "status"])
    e.set_defaults(func=_engine)

    r = sub.add_parser("run", help="execute chapter notebooks headless with papermill")
    r.add_argument("notebooks", nargs="*", help="default: every notebook in notebooks/")
    r.add_argument("--full", action="store_true", help="full sizes instead of ci=True")
    r.add_argument("--quiet", action="store_true", help="no per-cell progress bar")
    r.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="run N notebooks at a time (never two that share the Swarm or the "
                        "shared Prometheus); make run uses 2")
    r.set_defaults(func=_run)

    _grade_parser(sub)

    k = sub.add_parser("k8s", help="Kubernetes: install the binaries, start/stop a cluster")
    k.add_argument("action", choices=["install", "up", "down", "status"])
    k.add_argument("names", nargs="*", help="cluster name(s) for up/down (default: generated "
                                            "/ every cloudlab cluster)")
    k.add_argument("--backend", default="kwok", choices=["kwok", "kind", "kubeconfig"])
    k.add_argument("--nodes", type=int, default=None,
                   help="simulated nodes (kwok; default 2, or 0 with --real-node)")
    k.add_argument("--real-node", action="store_true",
                   help="up (kwok): join a real node (kubelet, containerd, kube-proxy, "
                        "CoreDNS) so pods really run; root on Linux, one per machine")
    k.add_argument("--no-node", action="store_true",
                   help="install: only the control plane, not the real node's programs")
    k.add_argument("--kubeconfig", help="for --backend kubeconfig")
    k.add_argument("--grading", action="store_true",
                   help="up (kwok): a cluster for the grader only, running just the "
                        "controllers grading needs (CLOUDLAB_GRADING_KUBECONFIG)")
    k.add_argument("--from-source", action="store_true",
                   help="install: skip the official downloads, build with Go")
    k.set_defaults(func=_k8s)

    h = sub.add_parser("hub", help="the course hub: JupyterHub with nbgrader's exchange "
                                   "(root, Linux)")
    h.add_argument("action", choices=["up", "down", "status"])
    h.add_argument("--roster", help="up: student ids, one a line (or CSV: id[,dockerhub])")
    h.add_argument("--course", help="the nbgrader course (default: this checkout)")
    h.add_argument("--course-id", default="cloudlab", help="nbgrader's course id")
    h.add_argument("--prefix", default="cl-", help="put before every account name "
                                                  "(default cl-)")
    h.add_argument("--instructor", default="instructor", help="the instructor's id")
    h.set_defaults(func=_hub)

    c = sub.add_parser("cleanup", help="remove everything the workbook created")
    c.add_argument("--run-id", help="only this run's resources")
    c.add_argument("--keep-services", action="store_true", help="leave local services up")
    c.set_defaults(func=_cleanup)
    return p


def _sandbox_options(a: argparse.ArgumentParser) -> None:
    """What autograde and regrade share: which students, how many sandboxes, their limits."""
    a.add_argument("--student", action="append", help="only this student (repeatable)")
    a.add_argument("--workers", type=int, help="parallel sandboxes (default: 4 per core, <= 8)")
    a.add_argument("--timeout", type=float, default=120,
                   help="seconds each submission may run, all cells together (default 120)")
    a.add_argument("--memory", default="512m", help="memory per sandbox (default 512m)")
    a.add_argument("--cpus", type=float, default=1.0, help="CPUs per sandbox (default 1)")
    a.add_argument("--pids", type=int, default=128, help="processes per sandbox (default 128; "
                   "--on kubernetes: the nodes' kubelet podPidsLimit applies instead)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")


def _grade_parser(sub) -> None:
    g = sub.add_parser("grade", help="graded exercises: release, collect, autograde, report, "
                                     "regrade, export, feedback, similar, late, validate, "
                                     "roster, registry, publish")
    g.add_argument("--course", help="course root (default: this checkout)")
    acts = g.add_subparsers(dest="action", required=True)
    a = acts.add_parser("release", help="regenerate exercises/ from solutions/")
    a.add_argument("assignment", nargs="?", help="default: every assignment")
    a.add_argument("--classmate", action="store_true", help="also publish docker-hub's "
                   "classmate image, with this course's secret message, to the registry")
    a = acts.add_parser("collect", help="copy submissions (folder or zip) into the course")
    a.add_argument("path", help="a folder or .zip: <student>/<assignment>/... or "
                                "<assignment>_<student>_attempt_<time>_<file>")
    a.add_argument("--assignment", help="only this assignment")
    a = acts.add_parser("autograde", help="grade submissions in parallel sandboxes")
    a.add_argument("assignment", nargs="?", help="default: every assignment")
    _sandbox_options(a)
    a.add_argument("--on", choices=["local", "kubernetes"], default="local",
                   help="where each notebook runs: a local container (default) or a Job on "
                        "a Kubernetes cluster")
    a.add_argument("--kubeconfig", help="--on kubernetes: the cluster's kubeconfig (default: "
                                        "$KUBECONFIG, ~/.kube/config, or this machine's "
                                        "`cloudlab k8s up --real-node` cluster)")
    a.add_argument("--context", help="--on kubernetes: the kubeconfig context")
    a.add_argument("--namespace", default="cloudlab-grading",
                   help="--on kubernetes: the grading namespace (default cloudlab-grading)")
    a.add_argument("--parallel", type=int, help="submissions graded at once (the same as "
                                               "--workers; on Kubernetes: Jobs at once)")
    a = acts.add_parser("export", help="grades as CSV, one row per student and assignment; "
                                       "or a Canvas/Moodle grade import CSV")
    a.add_argument("assignment", nargs="?")
    a.add_argument("-o", "--output", help="default: course/grades.csv "
                                          "(--lms: course/<assignment>-<lms>.csv)")
    a.add_argument("--lms", choices=["canvas", "moodle"], help="the LMS's grade import format")
    a.add_argument("--roster", help="--lms: the roster CSV (id plus name, canvas_id, sis_id, "
                                    "login, section, email)")
    a.add_argument("--items", action="store_true", help="--lms: a column per graded item too")
    a = acts.add_parser("report", help="HTML + JSON report: scores, pass rate per item, "
                                       "failures, flags, timing")
    a.add_argument("assignment")
    a.add_argument("-o", "--output", help="folder (default: course/reports)")
    a = acts.add_parser("regrade", help="re-run the grading; show per-item changes "
                                        "(--preview) or write them (--apply)")
    a.add_argument("assignment")
    mode = a.add_mutually_exclusive_group(required=True)
    mode.add_argument("--preview", action="store_true", help="show the changes, write nothing")
    mode.add_argument("--apply", action="store_true", help="write the changes")
    a.add_argument("--never-lower", action="store_true",
                   help="each item keeps the better of its old and new score")
    _sandbox_options(a)
    a = acts.add_parser("similar", help="pairs of unusually alike submissions (to look at)")
    a.add_argument("assignment")
    a.add_argument("--threshold", type=float, default=0.5,
                   help="similarity from 0 to 1 worth listing (default 0.5)")
    a = acts.add_parser("late", help="the late policy of an assignment "
                                     "(course/late-policy.toml)")
    a.add_argument("assignment")
    a = acts.add_parser("feedback", help="HTML feedback per submission (no hidden tests)")
    a.add_argument("assignment", nargs="?")
    a.add_argument("--student", action="append", help="only this student (repeatable)")
    a = acts.add_parser("publish", help="write the student edition (no solutions, hidden "
                                        "tests or secrets); optionally push it")
    a.add_argument("dest", help="a new folder (or an earlier edition, which is replaced)")
    a.add_argument("--push", metavar="REMOTE", help="commit and force-push it to this git remote")
    a = acts.add_parser("roster", help="per-student credentials for the course registry")
    a.add_argument("roster", help="student ids, one a line (or CSV: id[,dockerhub])")
    a.add_argument("--instructor", default="instructor", help="the account that may push "
                                                             "anywhere (default: instructor)")
    a = acts.add_parser("registry", help="the course registry with the roster's accounts")
    a.add_argument("state", choices=["up", "down"])
    a = acts.add_parser("validate", help="run a notebook's tests; exit 1 if any fails")
    a.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    a.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    g.set_defaults(func=_grade)

    from .manifests import K8S_VERSION
    m = sub.add_parser("manifests", help="check Kubernetes YAML: schemas, semantics, dry run")
    m.add_argument("files", nargs="+", metavar="FILE")
    m.add_argument("--version", default=K8S_VERSION, help="Kubernetes version of the schemas")
    m.add_argument("--kubeconfig", help="also ask this cluster (server-side dry run)")
    m.add_argument("--context", help="the kubeconfig context to use")
    m.set_defaults(func=_manifests)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, where cluster names may also follow an option.

    >>> parse(["k8s", "up", "--grading", "course-a"]).names
    ['course-a']
    """
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and getattr(args, "func", None) is _k8s and not any(
            e.startswith("-") for e in extra):
        args.names = [*args.names, *extra]  # argparse ends `names` at the first option
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        return args.func(args)
    except CloudlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
