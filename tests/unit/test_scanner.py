"""The scanner against real processes, and against fake /proc trees for the races it survives."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import traceback
import uuid
from pathlib import Path

import pytest
from helpers_processes import TEST_TARGET, ProcessSpawner, make_transcoder, wait_until

from ffrtmp.defaults import TARGET_COMMANDS
from ffrtmp.identity import ProcessIdentity, boot_id, current_identity, read_stat
from ffrtmp.matching import MatchRule, rules_for_commands
from ffrtmp.scanner import MANUAL_RULE, Scanner

NOBODY = 65534


@pytest.fixture
def spawner():
    spawner = ProcessSpawner()
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def ffmpeg(tmp_path: Path) -> Path:
    return make_transcoder(tmp_path)


def default_scanner(**kwargs) -> Scanner:
    """The rules a daemon makes of its target commands, with the suite's own target."""
    return Scanner(rules_for_commands([TEST_TARGET]), **kwargs)


def matched_by_pid(scanner: Scanner) -> dict:
    # Other tests on this machine may run copies of their own: look only at our pids.
    return {c.pid: c for c in scanner.scan().matched}


def own_command() -> str:
    with open("/proc/self/cmdline", "rb") as f:
        return os.path.basename(os.fsdecode(f.read().split(b"\0")[0]))


# -- real processes ----------------------------------------------------------------------------


def test_finds_an_ffmpeg_with_its_identity_argv_parent_user_and_cwd(spawner, ffmpeg, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = spawner.spawn([str(ffmpeg), "30"], cwd=workdir)

    result = default_scanner().scan()

    found = [c for c in result.matched if c.pid == process.pid]
    assert len(found) == 1
    candidate = found[0]
    assert candidate.identity == current_identity(process.pid)
    assert candidate.identity.boot_id == boot_id()
    assert candidate.command == TEST_TARGET
    assert candidate.rule == TEST_TARGET
    assert candidate.argv == (str(ffmpeg), "30")
    assert candidate.ppid == os.getpid()
    assert candidate.uid == os.getuid()
    assert candidate.user == pwd.getpwuid(os.getuid()).pw_name
    assert candidate.exe == str(ffmpeg)
    assert candidate.cwd == str(workdir)
    assert candidate.parent_command == own_command()
    assert result.seen >= len([n for n in os.listdir("/proc") if n.isdigit()]) // 2
    assert result.duration_s > 0


def test_does_not_match_a_process_that_only_mentions_ffmpeg(spawner):
    # argv[0] is sh (or sleep, if the shell execs its last command): the target is only an argument.
    process = spawner.spawn(["sh", "-c", "sleep 30", TEST_TARGET])
    scanner = default_scanner()

    assert process.pid not in matched_by_pid(scanner)
    assert scanner.inspect(process.pid) is None


def test_inspect_finds_the_same_candidate_as_a_scan(spawner, ffmpeg):
    process = spawner.spawn([str(ffmpeg), "30"])
    scanner = default_scanner()

    assert scanner.inspect(process.pid) == matched_by_pid(scanner)[process.pid]


def test_inspect_without_a_rule_gives_a_manual_candidate(spawner):
    process = spawner.spawn([shutil.which("sleep"), "30"])

    candidate = default_scanner().inspect(process.pid, require_match=False)

    assert candidate is not None
    assert candidate.rule == MANUAL_RULE
    assert candidate.command == "sleep"
    assert candidate.identity == current_identity(process.pid)


def test_inspect_of_a_pid_that_does_not_exist_is_none():
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert default_scanner().inspect(pid_max + 1, require_match=False) is None


def test_exe_rule_matches_the_executable_whatever_argv0_says(spawner, ffmpeg):
    renamed = spawner.spawn(["transcoder", "30"], executable=str(ffmpeg))
    plain_sleep = spawner.spawn([shutil.which("sleep"), "30"])
    scanner = Scanner([MatchRule(name="by-exe", exe=str(ffmpeg))])

    matched = matched_by_pid(scanner)

    assert matched[renamed.pid].rule == "by-exe"
    assert matched[renamed.pid].command == "transcoder"
    assert matched[renamed.pid].exe == str(ffmpeg)
    assert plain_sleep.pid not in matched
    assert default_scanner().inspect(renamed.pid) is None  # argv[0] is not the target


def test_cmdline_regex_rule_matches_on_the_arguments(spawner):
    token = uuid.uuid4().hex
    sleep = shutil.which("sleep")
    wanted = spawner.spawn([f"job-{token}", "29", "1"], executable=sleep)
    other = spawner.spawn([f"job-{token}", "28", "2"], executable=sleep)
    scanner = Scanner([MatchRule(name="job-29", cmdline_regex=rf"^job-{token} 29 1$")])

    matched = matched_by_pid(scanner)

    assert matched[wanted.pid].rule == "job-29"
    assert matched[wanted.pid].argv == (f"job-{token}", "29", "1")
    assert other.pid not in matched


def test_cmdline_regex_sees_arguments_beyond_the_first_page(spawner):
    marker = "0.0" + str(uuid.uuid4().int)[:12]
    argv = ["sleep", "30"] + ["0"] * 3000 + [marker]  # about 6 kB of command line
    process = spawner.spawn(argv, executable=shutil.which("sleep"))
    scanner = Scanner([MatchRule(name="long", cmdline_regex=rf" {marker}$")])

    matched = matched_by_pid(scanner)

    assert matched[process.pid].argv == tuple(argv)


def test_first_matching_rule_wins(spawner, ffmpeg):
    process = spawner.spawn([str(ffmpeg), "31"])
    rules = [
        MatchRule(name="long-sleeper", cmdline_regex=rf"{TEST_TARGET} 31$"),
        MatchRule(name=TEST_TARGET, command=TEST_TARGET),
    ]

    assert matched_by_pid(Scanner(rules))[process.pid].rule == "long-sleeper"
    assert matched_by_pid(Scanner(rules[::-1]))[process.pid].rule == TEST_TARGET


def test_skips_the_daemon_and_its_descendants(spawner, ffmpeg):
    child = spawner.spawn([str(ffmpeg), "30"])
    shell = spawner.spawn(
        ["sh", "-c", '"$0" 30 & echo $!; wait', str(ffmpeg)], stdout=subprocess.PIPE
    )
    grandchild_pid = int(shell.stdout.readline())
    spawner.extra_pids.append(grandchild_pid)
    wait_until(
        lambda: Path(f"/proc/{grandchild_pid}/cmdline").read_bytes().startswith(bytes(ffmpeg)),
        what="the grandchild to exec the target",
    )

    as_daemon = default_scanner(self_pid=os.getpid())
    as_stranger = default_scanner()

    assert child.pid not in matched_by_pid(as_daemon)
    assert grandchild_pid not in matched_by_pid(as_daemon)
    assert as_daemon.inspect(grandchild_pid) is None
    assert as_daemon.inspect(child.pid, require_match=False) is None
    found = matched_by_pid(as_stranger)
    assert child.pid in found
    assert found[grandchild_pid].ppid == shell.pid
    # The daemon itself, when it is a match: it skips itself.
    assert child.pid not in matched_by_pid(default_scanner(self_pid=child.pid))


def test_skips_a_zombie(spawner, ffmpeg):
    process = spawner.spawn([str(ffmpeg), "30"])
    scanner = default_scanner()
    assert process.pid in matched_by_pid(scanner)

    os.kill(process.pid, 9)  # not process.kill(): Popen would reap it, we want the zombie
    wait_until(lambda: read_stat(process.pid).state == "Z", what="the zombie")

    assert process.pid not in matched_by_pid(scanner)
    assert scanner.inspect(process.pid, require_match=False) is None


def test_a_shell_that_execs_into_ffmpeg_is_found_on_the_next_scan_with_the_same_identity(
    spawner, ffmpeg
):
    shell = spawner.spawn(
        ["sh", "-c", 'read line; exec "$0" 30', str(ffmpeg)], stdin=subprocess.PIPE
    )
    identity_before_exec = current_identity(shell.pid)
    scanner = default_scanner()
    assert shell.pid not in matched_by_pid(scanner)

    shell.stdin.write(b"go\n")
    shell.stdin.flush()
    wait_until(
        lambda: Path(f"/proc/{shell.pid}/cmdline").read_bytes() == bytes(ffmpeg) + b"\x0030\x00",
        what="the exec",
    )

    candidate = matched_by_pid(scanner)[shell.pid]
    assert candidate.identity == identity_before_exec
    assert candidate.argv == (str(ffmpeg), "30")


def test_exe_and_cwd_are_none_where_the_kernel_denies_them(spawner, ffmpeg):
    # Runs the scanner as nobody in a forked child: root may read every process, nobody may
    # not read exe and cwd of root's processes.
    process = spawner.spawn([str(ffmpeg), "30"])

    def scan_as_nobody():
        candidate = default_scanner().inspect(process.pid)
        return None if candidate is None else [candidate.exe, candidate.cwd, candidate.user]

    assert run_as_nobody(scan_as_nobody) == [None, None, "root"]


# -- fake /proc trees: races and denials cannot be produced on demand -------------------------


def write_fake_process(
    proc: Path,
    pid: int,
    argv: list[str] | None,
    *,
    state: str = "S",
    ppid: int = 1,
    start_ticks: int = 1000,
    uid: int = 0,
    with_stat: bool = True,
) -> Path:
    directory = proc / str(pid)
    directory.mkdir(exist_ok=True)
    if argv is not None:
        (directory / "cmdline").write_bytes(b"".join(os.fsencode(a) + b"\0" for a in argv))
    if with_stat:
        comm = os.path.basename(argv[0]) if argv else "kthread"
        fields = [state, str(ppid)] + ["0"] * 17 + [str(start_ticks)] + ["0"] * 32
        (directory / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    (directory / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    return directory


@pytest.fixture
def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "self").mkdir()  # non-numeric entries are not processes
    (proc / "uptime").write_text("1.0 1.0\n")
    return proc


def test_processes_that_vanish_mid_scan_are_counted_and_skipped(fake_proc):
    write_fake_process(fake_proc, 100, ["/usr/bin/ffmpeg", "-i", "in"], start_ticks=4242)
    # Gone between listing /proc and reading its cmdline:
    (fake_proc / "101").mkdir()
    # Gone between reading its cmdline and reading its stat:
    write_fake_process(fake_proc, 102, ["ffmpeg"], with_stat=False)
    # A kernel thread: empty cmdline, skipped but perfectly readable.
    write_fake_process(fake_proc, 103, [])

    result = Scanner(rules_for_commands(TARGET_COMMANDS), proc_root=str(fake_proc)).scan()

    assert result.seen == 4
    assert result.unreadable == 2
    assert [c.pid for c in result.matched] == [100]
    candidate = result.matched[0]
    assert candidate.identity == ProcessIdentity(boot_id(), 100, 4242)
    assert candidate.argv == ("/usr/bin/ffmpeg", "-i", "in")
    assert candidate.parent_command is None  # fake pid 1 does not exist
    assert (candidate.exe, candidate.cwd) == (None, None)  # no links in a fake tree


def test_a_recycled_pid_is_a_different_identity(fake_proc):
    scanner = Scanner(rules_for_commands(TARGET_COMMANDS), proc_root=str(fake_proc))
    write_fake_process(fake_proc, 200, ["ffmpeg", "-i", "a"], start_ticks=500)
    first = scanner.scan().matched[0]

    write_fake_process(fake_proc, 200, ["ffmpeg", "-i", "b"], start_ticks=900)
    second = scanner.scan().matched[0]

    assert first.pid == second.pid == 200
    assert first.identity != second.identity
    assert second.identity.start_ticks == 900


def test_ancestry_is_followed_through_the_ppid_chain(fake_proc):
    write_fake_process(fake_proc, 10, ["ffrtmp", "watch"])
    write_fake_process(fake_proc, 11, ["sh"], ppid=10)
    write_fake_process(fake_proc, 12, ["ffmpeg"], ppid=11)
    write_fake_process(fake_proc, 13, ["ffmpeg"], ppid=1)

    scanner = Scanner(rules_for_commands(TARGET_COMMANDS), proc_root=str(fake_proc), self_pid=10)
    result = scanner.scan()

    assert [c.pid for c in result.matched] == [13]
    assert result.unreadable == 0


def test_a_process_the_scanner_may_not_read_is_counted_unreadable(fake_proc, ffmpeg):
    # Root reads any file whatever its mode, so the scanner runs as nobody, in a tree nobody can
    # reach (pytest's tmp_path is private to root).
    tree = Path(tempfile.mkdtemp(prefix="ffrtmp-fake-proc-"))
    try:
        tree.chmod(0o755)
        write_fake_process(tree, 300, [TEST_TARGET]).chmod(0o755)
        write_fake_process(tree, 301, [TEST_TARGET]).chmod(0o700)

        def scan_as_nobody():
            result = default_scanner(proc_root=str(tree)).scan()
            return [result.seen, result.unreadable, [c.pid for c in result.matched]]

        assert run_as_nobody(scan_as_nobody) == [2, 1, [300]]
    finally:
        shutil.rmtree(tree)


def run_as_nobody(function):
    """Run function() in a forked child as uid nobody; return its JSON-able result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = json.dumps({"result": function()})
            code = 0
        except BaseException:
            payload = json.dumps({"error": traceback.format_exc()})
        finally:
            with os.fdopen(write_end, "w") as out:
                out.write(payload)
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        reply = json.loads(answer.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, reply.get("error")
    return reply["result"]
