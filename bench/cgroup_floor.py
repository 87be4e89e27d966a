"""The kernel's own cost of governing a process, with no daemon: bench/latency.py's reference.

Started once by bench/latency.py with a JSON plan on argv[1]:
    {"parents": [<parent cgroup directory per hierarchy>, ...],
     "limits": [[<hierarchy index>, <file name>, <text>], ...],
     "argv": [<program to start>, <its arguments>...]}
then reads one job name per line on stdin. For each it starts a fresh process (posix_spawn,
which returns once the program is executing), prints its pid, and at once does what ffrtmp's
governor does to attach a process on cgroup v1, in the same order and nothing else: make the
job cgroup in every hierarchy, write the limits, write the pid into each cgroup.procs. Then it
prints "ok" or "error <text>". Plain os calls: no reads back, no database, no checks, no
waiting for news of the process. Its children are reaped by the kernel (SIGCHLD ignored); the
bench kills each by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def govern(parents: list[str], limits: list[list], pid: int, job: str) -> None:
    directories = [os.path.join(parent, job) for parent in parents]
    for directory in directories:
        os.mkdir(directory)
    for index, name, text in limits:
        with open(os.path.join(directories[index], name), "w") as f:
            f.write(text)
    for directory in directories:
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def main() -> int:
    plan = json.loads(sys.argv[1])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        job = line.strip()
        pid = os.posix_spawn(plan["argv"][0], plan["argv"], os.environ)
        print(pid, flush=True)
        try:
            govern(plan["parents"], plan["limits"], pid, job)
        except OSError as exc:
            print(f"error {exc}", flush=True)
            continue
        print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
