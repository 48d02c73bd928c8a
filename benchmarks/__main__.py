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
    names = argv or sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    print(f"cio-relay benchmarks on {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module.main()
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
