"""Run the tests marked `vm` on a real cgroup v2 kernel, in a throwaway VM.

The test machines mount cgroup v1, where a v2 controller can never be enabled; current
distributions boot with cgroup v2 only. This boots the installed distribution kernel under qemu
with virtme-ng (the host's root filesystem shared read-only, this repository and its .venv
included), runs pytest inside as root, and exits with pytest's exit code.

    .venv/bin/python .ci/v2vm.py [--timeout S] [--kvm] [--keep DIR] [-- PYTEST ARGS]

Without PYTEST ARGS: `-m vm` over the test files that use that marker. The guest's CPU
is emulated (--kvm makes the guest hang on these machines: nested virtualisation).

A machine that cannot run the VM at all (no qemu, no kernel image, no vng, no static busybox)
gets one line saying why and exit code 0, so the rest of the suite still counts, unless
FFRTMP_REQUIRE_V2VM=1 (CI sets it): then that is a failure. A VM that is started but does not
produce pytest's result is always a failure.

What vng relays of the guest's output depends on its version (older ones mix the kernel console
into it), so the result travels in a file in a directory shared read-write (--rwdir, 9p); the output
is only echoed for people. 9p is also why the databases and pytest's basetemp live on a tmpfs
mounted inside the guest: SQLite's WAL needs shared memory mappings, which 9p does not offer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_FILE = "result.json"
LOG_FILE = "pytest.log"
JUNIT_FILE = "junit.xml"
MARKER = "vm"
NOT_RUN_FILE_ENV = "FFRTMP_NOT_RUN"  # as tests/parts.py names it
# Software emulation: the boot takes ~20 s idle and several times that with the host's cores
# busy; the tests inside are slow too. Generous, since a run that hits it is a failure anyway.
DEFAULT_TIMEOUT_S = 1800
BOOT_TRIES = 2

# The cgroup layout inside the guest. cgroup v2's "no internal processes" rule: a cgroup that
# holds processes cannot enable controllers for its children, so pytest must not run in the
# cgroup its tests create cgroups in. As systemd does for a unit with Delegate=yes and
# DelegateSubgroup=, the runner's cgroup is marked delegated and pytest runs in a leaf of it:
#
#   /sys/fs/cgroup/                       root (exempt from the rule): +cpu +io +memory +pids
#     ffrtmp-test-runner/                 trusted.delegate=1; never holds a process; the tests'
#                                         governors enable what they need here themselves
#       pytest/                           pytest and every process it spawns
#       <a test's parent cgroup>/         made by a test (tests/cgroup_hierarchy.py), then the
#         <job cgroups>                   governor's job cgroups below it
#
# io and pids are enabled too, so that a governor which enabled everything available instead of
# only cpu and memory would be seen doing so.
GUEST_CGROUP_ROOT = Path("/sys/fs/cgroup")
GUEST_ROOT_CONTROLLERS = "+cpu +io +memory +pids"
GUEST_RUNNER_CGROUP = "ffrtmp-test-runner"
GUEST_PYTEST_CGROUP = "pytest"
GUEST_SCRATCH = Path("/run/ffrtmp-v2vm")  # /run is writable in the guest; / is not
GUEST_SCRATCH_SIZE = "1G"
GUEST_SUMMARY = re.compile(r"^=+ (.+ in [0-9.]+s.*?) =+$")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["guest"]:
        guest_parser = argparse.ArgumentParser(prog="v2vm.py guest")
        guest_parser.add_argument("--rwdir", type=Path, required=True)
        guest_parser.add_argument("pytest_args", nargs="*")
        args = guest_parser.parse_args(argv[1:])
        return guest(args.rwdir, args.pytest_args)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", default="2")
    parser.add_argument(
        "--kvm",
        action="store_true",
        help="use KVM (on the test machines, nested virtualisation, the guest hangs with it)",
    )
    parser.add_argument("--keep", type=Path, help="directory for the result, log and junit xml")
    parser.add_argument(
        "pytest_args", nargs="*", help=f"after --; default: the tests marked {MARKER}"
    )
    return host(parser.parse_args(argv))


# The host side.


def host(args: argparse.Namespace) -> int:
    kernel, problems = preflight()
    if problems:
        line = "v2 VM tests not run: " + "; ".join(problems)
        if os.environ.get("FFRTMP_REQUIRE_V2VM") == "1":
            print(line + " (FFRTMP_REQUIRE_V2VM=1: failing)", flush=True)
            return 1
        print(line, flush=True)
        record_not_run(problems)
        return 0
    assert kernel is not None
    rwdir = args.keep or Path(tempfile.mkdtemp(prefix="ffrtmp-v2vm-"))
    rwdir.mkdir(parents=True, exist_ok=True)
    for name in (RESULT_FILE, LOG_FILE, JUNIT_FILE):
        (rwdir / name).unlink(missing_ok=True)
    pytest_args = args.pytest_args or default_pytest_args()
    # -B and PYTHONDONTWRITEBYTECODE: the repository is read-only in the guest.
    inner = [sys.executable, "-B", str(Path(__file__).resolve()), "guest", "--rwdir", str(rwdir)]
    inner += ["--", *pytest_args]
    command = f"cd {shlex.quote(str(REPO))} && PYTHONDONTWRITEBYTECODE=1 {shlex.join(inner)}"
    vng = [str(tool_path("vng")), "--run", str(kernel), "--user", "root"]
    vng += [] if args.kvm else ["--disable-kvm"]
    vng += ["--memory", args.memory, "--cpus", args.cpus, "--rwdir", str(rwdir)]
    vng += ["--exec", command]
    env = dict(os.environ)
    # vng runs `virtme-run` by name: the venv's bin must come first on PATH.
    env["PATH"] = f"{tool_path('vng').parent}{os.pathsep}{env.get('PATH', '')}"

    for boot in range(1, BOOT_TRIES + 1):
        print(f"v2 VM: booting {kernel.name} ({'KVM' if args.kvm else 'no KVM'})", flush=True)
        started = time.monotonic()
        vng_code, timed_out, tail = run_vm(vng, env, args.timeout)
        elapsed = time.monotonic() - started
        result = read_result(rwdir)
        # Seen here once: vng exiting 255 at once, with no output (the cause was not found; the
        # next boot worked). A VM that never started says nothing of the tests: boot once more.
        never_started = result is None and not timed_out and not "".join(tail).strip()
        if not (never_started and boot < BOOT_TRIES):
            break
        print(f"v2 VM: vng exited {vng_code} at once without a word; booting again", flush=True)

    if result is None:
        why = f"timed out after {args.timeout:.0f} s" if timed_out else f"vng exited {vng_code}"
        print("".join(tail), end="", flush=True)
        print(f"v2 VM: FAILED, the VM gave no pytest result ({why}); files in {rwdir}")
        return 1
    if result.get("error"):
        print(f"v2 VM: the guest runner failed: {result['error']}; files in {rwdir}")
        return 1
    code = int(result["exit_code"])
    print(
        f"v2 VM: {elapsed:.0f} s in all (boot and shutdown {elapsed - result['seconds']:.0f} s, "
        f"pytest {result['seconds']:.0f} s), kernel {result['kernel']}, "
        f"pytest exit code {code}",
        flush=True,
    )
    if code == 0 and args.keep is None:
        shutil.rmtree(rwdir, ignore_errors=True)
    elif code != 0:
        print(f"v2 VM: log and junit xml kept in {rwdir}")
    # The last line is pytest's own summary line, so whoever reads closing lines reads it.
    print(result.get("summary") or f"pytest in the VM exited {code} without a summary line")
    return code


def record_not_run(problems: list[str]) -> None:
    """Adds this part to the file `make test` names the parts that did not run from
    (tests/parts.py, .ci/not_run.py): what would run it is in each problem's brackets."""
    path = os.environ.get(NOT_RUN_FILE_ENV)
    if not path:
        return
    packages, others = [], []
    for problem in problems:
        found = re.search(r"\(([^()]+)\)$", problem)
        if found and not found.group(1).startswith("pip:"):
            packages.append(found.group(1))
        else:
            others.append(found.group(1) if found else problem)
    needs = ([f"apt-get install {' '.join(packages)}"] if packages else []) + others
    part = {"name": "cgroup v2 in a VM (make test-v2)", "needs": "; ".join(needs)}
    with open(path, "a") as f:
        f.write(json.dumps(part) + "\n")


def default_pytest_args() -> list[str]:
    """`-m vm` over only the test files that use the marker: importing every test module
    under emulation costs ~45 s, more than the tests themselves."""
    files = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "tests").rglob("test_*.py"))
        if f"mark.{MARKER}" in path.read_text()
    ]
    return ["-m", MARKER, *(files or ["tests"])]


def preflight() -> tuple[Path | None, list[str]]:
    """The kernel to boot, and what is missing to boot it (Debian package names in brackets)."""
    problems = []
    qemu = f"qemu-system-{os.uname().machine}"
    if shutil.which(qemu) is None:
        problems.append(f"no {qemu} (qemu-system-x86)")
    kernel = find_kernel()
    if kernel is None:
        problems.append("no /boot/vmlinuz-* with its /lib/modules (linux-image-amd64)")
    elif not os.access(kernel, os.R_OK):
        problems.append(f"{kernel} is not readable")
    for tool in ("vng", "virtme-run"):
        if not tool_path(tool).is_file():
            problems.append(f"no {tool} beside {sys.executable} (pip: virtme-ng)")
    # What virtme-run needs to build the guest's initramfs.
    if not any(is_static_elf(p) for p in busybox_candidates()):
        problems.append("no statically linked busybox (busybox-static)")
    if shutil.which("file") is None:
        problems.append("no `file` command (file)")
    return kernel, problems


def find_kernel() -> Path | None:
    """The newest /boot/vmlinuz-VERSION whose modules are installed (9p and virtio are
    modules in distribution kernels)."""
    found = []
    for image in Path("/boot").glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / version).is_dir():
            key = [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", version)]
            found.append((key, image))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def tool_path(name: str) -> Path:
    """A console script of this interpreter's environment: `make` installs virtme-ng into
    the project's venv, whose bin is not necessarily on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    return Path(found) if found else beside


def busybox_candidates() -> list[Path]:
    # virtme-run's own search order.
    names = ("busybox-static", "busybox.static", "busybox")
    dirs = [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    dirs += [Path(p) for p in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")]
    return [d / n for n in names for d in dirs if (d / n).is_file()]


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit only
                return False
            order = "little" if header[5] == 1 else "big"
            phoff = int.from_bytes(header[32:40], order)
            phentsize = int.from_bytes(header[54:56], order)
            phnum = int.from_bytes(header[56:58], order)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    pt_interp = 3
    types = (int.from_bytes(table[i : i + 4], order) for i in range(0, len(table), phentsize))
    return pt_interp not in types


def run_vm(command: list[str], env: dict, timeout: float) -> tuple[int, bool, list[str]]:
    """Run vng, echoing the guest's console; (exit code, timed out, last lines)."""
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: qemu can be ended with it, by id
    )
    timed_out = threading.Event()

    def end_it() -> None:
        timed_out.set()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue

    timer = threading.Timer(timeout, end_it)
    timer.start()
    tail: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail = (tail + [line])[-40:]
        code = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            end_it()
    return code, timed_out.is_set(), tail


def read_result(rwdir: Path) -> dict | None:
    try:
        return json.loads((rwdir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


# The guest side: runs as root inside the VM, in the root cgroup.


def guest(rwdir: Path, pytest_args: list[str]) -> int:
    result: dict = {"kernel": os.uname().release}
    try:
        scratch = mount_scratch()
        leaf = make_cgroup_layout()
        result |= run_pytest(rwdir, scratch, leaf, pytest_args)
    except Exception as err:  # the host must learn what went wrong, not just "no result"
        result["error"] = f"{type(err).__name__}: {err}"
    (rwdir / RESULT_FILE).write_text(json.dumps(result))
    return 1 if "error" in result else 0


def mount_scratch() -> Path:
    GUEST_SCRATCH.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={GUEST_SCRATCH_SIZE},mode=0755", "tmpfs"]
        + [str(GUEST_SCRATCH)],
        check=True,
    )
    return GUEST_SCRATCH


def make_cgroup_layout() -> Path:
    """The layout drawn at the top of this file; returns pytest's leaf."""
    write(GUEST_CGROUP_ROOT / "cgroup.subtree_control", GUEST_ROOT_CONTROLLERS)
    runner = GUEST_CGROUP_ROOT / GUEST_RUNNER_CGROUP
    runner.mkdir()
    os.setxattr(runner, "trusted.delegate", b"1")
    leaf = runner / GUEST_PYTEST_CGROUP
    leaf.mkdir()
    return leaf


def write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def run_pytest(rwdir: Path, scratch: Path, leaf: Path, pytest_args: list[str]) -> dict:
    basetemp = scratch / "pytest"
    home = scratch / "home"
    home.mkdir()
    env = dict(os.environ)
    env |= {
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(scratch),
        "HOME": str(home),
        "HYPOTHESIS_STORAGE_DIRECTORY": str(scratch / "hypothesis"),
        # A folder on 9p, for the tests of what a database on such a filesystem does.
        "FFRTMP_TEST_9P_DIR": str(rwdir),
    }
    env.pop(NOT_RUN_FILE_ENV, None)  # the host's file: read-only here, and the VM is one part
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v"]
    command += [f"--basetemp={basetemp}", f"--junitxml={rwdir / JUNIT_FILE}", *pytest_args]

    def into_leaf() -> None:
        # Runs in the child between fork and exec: pytest and all it spawns start in the leaf.
        write(leaf / "cgroup.procs", str(os.getpid()))

    started = time.monotonic()
    summary = ""
    with open(rwdir / LOG_FILE, "w") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=into_leaf,
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            match = GUEST_SUMMARY.match(line.strip())
            if match:
                summary = line.strip()
        code = process.wait()
    return {"exit_code": code, "summary": summary, "seconds": time.monotonic() - started}


if __name__ == "__main__":
    sys.exit(main())
