"""Fork, exec and exit events from the kernel's process-events connector (netlink).

The connector multicasts one message per event to every socket subscribed to CN_IDX_PROC,
so the daemon learns of new processes at once and gets the real exit status of processes it
did not start. The kernel drops messages when the socket's receive buffer is full and then
fails the next recv with ENOBUFS: `read_events` turns that into an `Overflow`, after which the
daemon must rescan /proc because events were lost.

What the events mean:
- Pids are the kernel's (a thread's pid is its thread id; a process is its thread group, `tgid`).
  Fork events for new threads (child_pid != child_tgid) and exit events of threads
  (pid != tgid) say nothing about processes, so the listener drops them unless asked
  (`include_threads=True`); their `is_thread` property tells them apart.
- `ExitEvent.exit_status` is the raw wait status (decode it with `ffrtmp.exit_status`).
  `ExitEvent.exit_signal` is *not* the killing signal: it is the signal the parent gets
  (SIGCHLD, 17, almost always).
- The exit event of a thread-group leader is sent when the leader thread exits. If the main
  thread ends with pthread_exit while other threads run on, the event comes early and its
  status is the leader's own; confirm with /proc before treating the process as gone.
- `timestamp_ns` is the kernel's monotonic clock, comparable with `time.monotonic_ns()`.

Only the standard library is used. Parsing is the pure function `parse_messages`.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import select
import socket
import struct
import time
from dataclasses import dataclass

from ffrtmp import defaults, failpoints

logger = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
# Since Linux 6.6 a listener can ask for a subset of event types; older kernels ignore the
# request and send everything, and the listener drops what was not asked for. The daemon needs
# exec and exit only: forks, the most frequent kind, are for those who ask.
EXEC_AND_EXIT = PROC_EVENT_EXEC | PROC_EVENT_EXIT
ALL_EVENTS = PROC_EVENT_FORK | EXEC_AND_EXIT

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
CN_MSG_HEADER = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
PROC_EVENT_HEADER = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
FORK_DATA = struct.Struct("=iiii")  # parent_pid, parent_tgid, child_pid, child_tgid
EXEC_DATA = struct.Struct("=ii")  # process_pid, process_tgid
EXIT_DATA = struct.Struct("=iiIi")  # process_pid, process_tgid, exit_code, exit_signal
ACK_DATA = struct.Struct("=I")  # err

_RECV_BYTES = 64 * 1024  # far more than one datagram; the kernel sends 76-byte messages


@dataclass(frozen=True, slots=True)
class ExecEvent:
    pid: int
    tgid: int
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class ForkEvent:
    parent_pid: int
    parent_tgid: int
    child_pid: int
    child_tgid: int
    timestamp_ns: int

    @property
    def is_thread(self) -> bool:
        """True when a thread was created, not a process."""
        return self.child_pid != self.child_tgid


@dataclass(frozen=True, slots=True)
class ExitEvent:
    pid: int
    tgid: int
    exit_status: int  # raw wait status, the kernel's task->exit_code
    exit_signal: int  # signal sent to the parent (SIGCHLD), -1 for a thread
    timestamp_ns: int

    @property
    def is_thread(self) -> bool:
        """True when a thread other than the thread-group leader exited."""
        return self.pid != self.tgid


@dataclass(frozen=True, slots=True)
class Overflow:
    """The kernel dropped events (ENOBUFS): a full scan is needed to catch up."""


ProcEvent = ExecEvent | ForkEvent | ExitEvent | Overflow


@dataclass(frozen=True, slots=True)
class _ListenAck:
    """The kernel's answer to a LISTEN/IGNORE request, matched by the request's ack number."""

    ack: int
    err: int


def _nlmsg_align(length: int) -> int:
    return (length + 3) & ~3


def _parse(data: bytes) -> list[ExecEvent | ForkEvent | ExitEvent | _ListenAck]:
    items: list[ExecEvent | ForkEvent | ExitEvent | _ListenAck] = []
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        msg_len, msg_type, _flags, _seq, _port = NLMSG_HEADER.unpack_from(data, offset)
        if msg_len < NLMSG_HEADER.size or offset + msg_len > len(data):
            logger.warning(
                "truncated netlink message at byte %s (length %s, %s bytes left); rest ignored",
                offset,
                msg_len,
                len(data) - offset,
            )
            break
        if msg_type == NLMSG_DONE:
            item = _parse_connector(data, offset + NLMSG_HEADER.size, offset + msg_len)
            if item is not None:
                items.append(item)
        elif msg_type == NLMSG_ERROR:
            logger.warning("netlink error message from the process-events connector")
        offset += _nlmsg_align(msg_len)
    return items


def _parse_connector(
    data: bytes, start: int, end: int
) -> ExecEvent | ForkEvent | ExitEvent | _ListenAck | None:
    if start + CN_MSG_HEADER.size + PROC_EVENT_HEADER.size > end:
        return None
    idx, val, _seq, ack, payload_len, _flags = CN_MSG_HEADER.unpack_from(data, start)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
        return None
    event_start = start + CN_MSG_HEADER.size
    event_end = min(end, event_start + payload_len)
    what, _cpu, timestamp_ns = PROC_EVENT_HEADER.unpack_from(data, event_start)
    body = event_start + PROC_EVENT_HEADER.size

    def fits(layout: struct.Struct) -> bool:
        return body + layout.size <= event_end

    if what == PROC_EVENT_EXIT and fits(EXIT_DATA):
        pid, tgid, status, exit_signal = EXIT_DATA.unpack_from(data, body)
        return ExitEvent(pid, tgid, status, exit_signal, timestamp_ns)
    if what == PROC_EVENT_FORK and fits(FORK_DATA):
        return ForkEvent(*FORK_DATA.unpack_from(data, body), timestamp_ns)
    if what == PROC_EVENT_EXEC and fits(EXEC_DATA):
        return ExecEvent(*EXEC_DATA.unpack_from(data, body), timestamp_ns)
    if what == PROC_EVENT_NONE and fits(ACK_DATA):
        return _ListenAck(ack, ACK_DATA.unpack_from(data, body)[0])
    return None  # uid, gid, sid, ptrace, comm, coredump: not needed


def parse_messages(data: bytes) -> list[ExecEvent | ForkEvent | ExitEvent]:
    """The fork, exec and exit events in one datagram (which may hold several messages).

    Other event types, acknowledgements and foreign connector messages are skipped; a
    truncated message ends the parse with a warning and the events before it are kept.
    """
    return [item for item in _parse(data) if not isinstance(item, _ListenAck)]


def _control_message(port_id: int, op: int, nonce: int, event_filter: int | None) -> bytes:
    payload = (
        struct.pack("=I", op) if event_filter is None else struct.pack("=II", op, event_filter)
    )
    connector = CN_MSG_HEADER.pack(CN_IDX_PROC, CN_VAL_PROC, nonce, nonce, len(payload), 0)
    length = NLMSG_HEADER.size + len(connector) + len(payload)
    return NLMSG_HEADER.pack(length, NLMSG_DONE, 0, nonce, port_id) + connector + payload


class ProcEventListener:
    """A subscription to the kernel's process events; select() on `fileno()`, then read.

    Not thread-safe: one thread opens, reads and closes it.
    """

    def __init__(
        self,
        receive_buffer_bytes: int = defaults.PROC_EVENTS_RECEIVE_BUFFER_BYTES,
        include_threads: bool = False,
        ack_timeout_seconds: float = defaults.PROC_EVENTS_ACK_TIMEOUT_SECONDS,
        kinds: int = EXEC_AND_EXIT,
    ) -> None:
        if receive_buffer_bytes <= 0:
            raise ValueError(f"receive buffer must be positive, not {receive_buffer_bytes}")
        self.receive_buffer_bytes = receive_buffer_bytes
        self.include_threads = include_threads
        self.wants_forks = bool(kinds & PROC_EVENT_FORK)
        # Processes whose thread exits are wanted even without include_threads: those whose
        # main thread ended early (pthread_exit), so that their real end is seen.
        self.thread_groups: set[int] = set()
        self.kinds = kinds
        self.ack_timeout_seconds = ack_timeout_seconds
        self.overflows = 0
        self._sock: socket.socket | None = None
        self._pending: list[ProcEvent] = []

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def open(self) -> ProcEventListener:
        """Subscribe; raises OSError when the connector is missing or refuses this process."""
        if self._sock is not None:
            return self
        failpoints.check("proc_events.open")
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR
        )
        try:
            sock.bind((0, CN_IDX_PROC))
            port_id = sock.getsockname()[0]
            nonce = random.getrandbits(31)
            # The plain request is the one every kernel acknowledges, so it proves the
            # subscription; the filter request that follows is only an optimisation.
            sock.send(_control_message(port_id, PROC_CN_MCAST_LISTEN, nonce, None))
            self._pending = self._keep(self._await_ack(sock, nonce))
            sock.send(_control_message(port_id, PROC_CN_MCAST_LISTEN, nonce + 1, self.kinds))
            # Set after the acknowledgement so a deliberately small buffer cannot lose it.
            self._set_receive_buffer(sock)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.overflows += sum(isinstance(e, Overflow) for e in self._pending)
        logger.debug("listening to kernel process events")
        return self

    @property
    def receive_buffer_granted(self) -> int:
        """The receive buffer the kernel gave the socket (twice what was asked, or capped)."""
        if self._sock is None:
            raise ValueError("the process-events listener is not open")
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def _await_ack(self, sock: socket.socket, nonce: int) -> list[ProcEvent]:
        early: list[ProcEvent] = []
        deadline = time.monotonic() + self.ack_timeout_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], remaining)[0]:
                break
            try:
                data = sock.recv(_RECV_BYTES)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                early.append(Overflow())
                continue
            for item in _parse(data):
                if not isinstance(item, _ListenAck):
                    early.append(item)
                elif item.ack == nonce + 1:
                    if item.err:
                        raise OSError(
                            item.err, f"process-events connector: {os.strerror(item.err)}"
                        )
                    return early
        raise OSError(
            errno.ETIMEDOUT,
            "the kernel did not confirm the process-events subscription "
            "(no CONFIG_PROC_EVENTS, or not in the initial pid and user namespace)",
        )

    def _set_receive_buffer(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.receive_buffer_bytes)
        except PermissionError:
            # Without CAP_NET_ADMIN the kernel caps this at net.core.rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("the process-events listener is not open")
        return self._sock.fileno()

    def read_events(self, max_events: int = defaults.PROC_EVENTS_MAX_PER_READ) -> list[ProcEvent]:
        """The events available now, without blocking; an `Overflow` marks lost events."""
        if self._sock is None:
            raise ValueError("the process-events listener is not open")
        events, self._pending = self._pending, []
        while len(events) < max_events:
            try:
                failpoints.check("proc_events.recv")
                data = self._sock.recv(_RECV_BYTES)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overflows += 1
                logger.warning("process events were lost (receive buffer overflow)")
                events.append(Overflow())
                continue
            events.extend(self._keep(parse_messages(data)))
        return events

    def _keep(self, events: list[ProcEvent]) -> list[ProcEvent]:
        if not self.wants_forks:
            events = [e for e in events if not isinstance(e, ForkEvent)]
        if self.include_threads:
            return events
        return [
            e
            for e in events
            if not getattr(e, "is_thread", False)
            or isinstance(e, ExitEvent)
            and e.tgid in self.thread_groups
        ]

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            port_id = sock.getsockname()[0]
            sock.send(_control_message(port_id, PROC_CN_MCAST_IGNORE, 0, None))
        except OSError as exc:
            logger.debug("could not unsubscribe from process events: %s", exc)
        finally:
            sock.close()

    def __enter__(self) -> ProcEventListener:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def listener_available() -> str | None:
    """None when the process-events connector can be used here, else one sentence why not."""
    try:
        with ProcEventListener():
            return None
    except OSError as exc:
        return unavailable_reason(exc)


def unavailable_reason(exc: OSError) -> str:
    """One sentence saying why opening the connector failed with `exc`."""
    if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
        return "this kernel has no netlink process-events connector (EPROTONOSUPPORT)"
    if exc.errno in (errno.EPERM, errno.EACCES):
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}, not root"
        return (
            f"the kernel refused the process-events connector (EPERM) to this process ({who}); "
            "it needs CAP_NET_ADMIN in the initial user namespace"
        )
    if exc.errno == errno.ETIMEDOUT:
        return str(exc.strerror)
    return f"the process-events connector could not be opened: {exc.strerror or exc}"
