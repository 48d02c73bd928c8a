"""Run every benchmark (``make bench``) or the ones named: ``python -m benchmarks emulator``.

Each ``benchmarks/bench_<name>.py`` has a ``main() -> None`` that runs its measurements, compares
them with a reference measured in the same run, and prints a short report (with the ratio).
Results are recorded by hand in docs/benchmarks.md with the machine's core count.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str]) -> None:
    available = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    if any(arg in ("-h", "--help") for arg in argv):
        print("usage: python -m benchmarks [NAME ...]\n")
        print(f"NAME: {', '.join(available)} (all if none)")
        print("Each benchmark's BENCH_* environment variables are in its module docstring.")
        return
    unknown = [name for name in argv if name not in available]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(available)}")
    names = argv or available
    print(f"cio-relay benchmarks on {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module.main()
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
