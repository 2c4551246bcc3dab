"""Benchmark: launch to ready, a qemu VM against a container (``cloudlab.vm.measure``).

The chapter says a VM can take minutes to boot while a container spawns in seconds.
Targets: a container is ready within 2 s (median), and faster than the VM. Where KVM does
not work qemu emulates the CPU in software, which makes the VM figure pessimistic.
Records ``bench/results/vm_vs_container.json``.

    .venv/bin/python bench/vm_vs_container.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys

from _report import Figure, at_least, at_most, info, save, skipped

import cloudlab as cl

CONTAINER_S = 2.0


def main() -> list[Figure]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    medians, figures = {}, []
    for kind in ("vm", "container"):
        try:
            if kind == "container":
                cl.engine.require()
            timings = cl.vm.measure(kind, runs=args.runs, progress=False)
        except cl.UnavailableError as exc:
            figures.append(info(f"{kind}: launch to ready", None, "s", f"skipped: {exc}"))
            continue
        medians[kind] = float(timings["seconds"].median())
        note = f"median of {args.runs}, spread {timings['seconds'].min():.2f}-" \
               f"{timings['seconds'].max():.2f} s"
        figures.append(at_most(f"{kind}: launch to ready", medians[kind], "s", CONTAINER_S, note)
                       if kind == "container" else info(f"{kind}: launch to ready",
                                                        medians[kind], "s", note))
    if len(medians) == 2:
        figures.append(at_least("VM / container", medians["vm"] / medians["container"], "x", 1,
                                "how many times longer the VM takes to be ready"))
    return figures or skipped("neither qemu nor a Docker engine is available")


if __name__ == "__main__":
    sys.exit(save("vm_vs_container", main()))
