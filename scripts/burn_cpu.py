"""Keep CPUs busy, to run the test suite (or anything) on a loaded machine.

Each worker process spins in pure Python until the time is up or it is interrupted. The suite
must pass beside it: a test that fails only under load waits for "long enough" somewhere
instead of for the event it needs.

    python scripts/burn_cpu.py --workers 2 --seconds 3600 &
    python -m pytest
    kill %1

``scripts/suite_under_load.sh`` does exactly that, several times in a row.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time


def burn(seconds: float, parent: int) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end and os.getppid() == parent:  # never outlive the parent
        for i in range(100_000):
            x = (x * 31 + i) & 0xFFFFFFFF


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after (bound)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit cleanly: workers stop too
    procs = [
        multiprocessing.Process(target=burn, args=(args.seconds, os.getpid()), daemon=True)
        for _ in range(args.workers)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
