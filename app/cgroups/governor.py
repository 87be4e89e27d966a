"""The governor: puts a process into a cgroup of its own with verified CPU and memory limits.

Each cgroup layout (`ffrtmp.cgroups.v1`, `ffrtmp.cgroups.v2`) subclasses `Governor`, and all share
the attach sequence defined here, in an order that never leaves a process half-governed:

1. create the job cgroup (in every hierarchy that is needed),
2. write the limits, read them back and compare,
3. check that the pid is still the very process we mean (boot id, pid, start time),
4. write the pid to `cgroup.procs`, and read `/proc/<pid>/cgroup` to confirm it arrived.

Every failure raises: a `GovernorError` (an OSError keeping the errno, so the error classifier
can key on it, plus the path) or `TargetGone` when the process is no longer there. The job
cgroups created by a failed attach are removed again.

Only job cgroups that follow the ownership rule of `ffrtmp.cgroups.jobs` are ever touched.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ffrtmp import failpoints
from ffrtmp.cgroups.errors import GovernorError, TargetGone, wrapped_error
from ffrtmp.cgroups.files import CgroupFiles, int_or_none, parse_keyed
from ffrtmp.cgroups.hierarchies import Hierarchy, read_proc_cgroups
from ffrtmp.cgroups.jobs import is_job_name, require_job_name
from ffrtmp.cgroups.parent_weight import settle_parent_weight
from ffrtmp.identity import ProcessIdentity
from ffrtmp.limits import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    """What attach() did: the job cgroup directories and the limits read back from them."""

    version: int
    cgroup_paths: tuple[str, ...]
    applied: Limits
    # Where the process was before, as /proc/<pid>/cgroup names it per controller key ("" on
    # v2); empty when unknown (found already in place). `ffrtmp release` moves it back there.
    origin: tuple[tuple[str, str], ...] = ()
    # Whether the memory it was charged before the move came along into its job cgroup (v1
    # with memory.move_charge_at_immigrate); False: it stays where it was (v2 never moves it);
    # None: unknown.
    memory_charge_moved: bool | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """A job cgroup's counters; None where this kernel does not offer the counter.
    Memory charged before the process was moved in stays with its old cgroup unless the
    charge was moved (Attachment.memory_charge_moved: v1 only, where the kernel still can),
    so the peak then covers the time after the attach only."""

    peak_memory_bytes: int | None
    cpu_seconds: float | None
    oom_killed: bool | None

    @classmethod
    def from_counters(
        cls, peak_memory_bytes: int | None, cpu_seconds: float | None, oom_kills: int | None
    ) -> Usage:
        return cls(peak_memory_bytes, cpu_seconds, None if oom_kills is None else oom_kills > 0)


class Governor:
    """Puts processes into job cgroups with verified limits. Build it with
    `ffrtmp.cgroups.create_governor`, which picks the layout."""

    version: int = 0

    def __init__(
        self,
        root: Path,
        parent: str | None,
        proc_root: Path,
        files: CgroupFiles | None,
        parent_cpu_weight: int | None = None,
        keep_parent_weight: bool = False,
    ) -> None:
        self.root = root
        self.proc_root = proc_root
        self.files = files or CgroupFiles()
        self.hierarchies: tuple[Hierarchy, ...] = ()
        self._problem: GovernorError | None = None
        # The weight the parent gets against its siblings (ffrtmp.cgroups.parent_weight);
        # None leaves it alone. keep_parent_weight: only a parent made here gets it.
        self.parent_cpu_weight = parent_cpu_weight
        self.keep_parent_weight = keep_parent_weight
        self._parent_weight_settled = False
        try:
            self.hierarchies = self._find_hierarchies(parent)
        except GovernorError as err:
            self._problem = err

    @property
    def parents(self) -> tuple[Path, ...]:
        return tuple(h.parent for h in self.hierarchies)

    @property
    def own_cgroup_file(self) -> Path:
        return self.proc_root / "self" / "cgroup"

    def job_directories(self, job_id: str) -> tuple[Path, ...]:
        """The job's cgroup directories, one per hierarchy used, whether they exist or not."""
        require_job_name(job_id)
        return tuple(h.parent / job_id for h in self.hierarchies)

    @property
    def parent_description(self) -> str:
        """The parent cgroup directories, for people: one per hierarchy used."""
        return ", ".join(str(p) for p in self.parents)

    def check(self) -> str | None:
        """None when job cgroups can be created and limited, else one sentence why not.
        It prepares the parent cgroup (creates it, enables controllers) to find out."""
        try:
            self._ready()
        except GovernorError as err:
            return str(err)
        return None

    def attach(self, identity: ProcessIdentity, job_id: str, limits: Limits) -> Attachment:
        """Move the process into job cgroup `job_id` with `limits`, or raise saying why not."""
        directories = self.job_directories(job_id)
        self._ready()
        created: list[Path] = []
        moved: list[tuple[Hierarchy, str | None]] = []  # where the pid was, to undo a move
        try:
            for directory in directories:
                if self._make_directory(directory):
                    created.append(directory)
            self._apply_limits(job_id, limits)
            charge_moved = self._move_charge_on_entry(job_id)
            # Not is_alive(): the kernel takes an exited, unreaped pid's write to cgroup.procs
            # without an error and leaves it where it was, so a zombie must be caught here.
            if not identity.is_running():
                raise TargetGone(identity, "before it could be moved into its cgroup")
            before = self._memberships(identity)
            # A crash between two moves leaves a process in some of its job cgroups: where it
            # was before those is lost. If this attempt fails, it goes where its other
            # cgroups are (on v1 they share one path as a rule), else to our parent cgroup.
            moved.extend(self._stale_moves(before, directories))
            for hierarchy, directory in zip(self.hierarchies, directories, strict=True):
                procs = directory / "cgroup.procs"
                try:
                    failpoints.check("governor.attach")
                    self.files.write(procs, str(identity.pid))
                except OSError as err:
                    raise wrapped_error(err, f"move {identity} into", procs) from err
                moved.append((hierarchy, before.get(hierarchy.key)))
            self._verify_membership(identity, directories)
            # Read after the move, off the way to the limits: they were written and read back
            # before it, and only this attach writes them.
            applied = self._applied_limits(job_id)
        except TargetGone:
            # Nothing to move back: the pid is gone, or is now another process's.
            self._remove_directories(reversed(created))
            raise
        except BaseException:
            self._undo_moves(identity, moved)
            self._remove_directories(reversed(created))
            raise
        job_paths = {h.cgroup_path(d) for h, d in zip(self.hierarchies, directories, strict=True)}
        origin = _origin(moved, job_paths)
        attachment = Attachment(
            self.version,
            tuple(str(d) for d in directories),
            applied,
            tuple(origin.items()),
            charge_moved,
        )
        log.debug("moved %s into %s: %s", identity, job_id, applied.describe())
        return attachment

    def governed_as(self, identity: ProcessIdentity, job_id: str) -> Attachment | None:
        """The attachment the kernel shows for a process that already sits in every one of
        its job cgroups (a crash may have come between the move and its record), with the
        limits read back from them; None when it does not."""
        directories = self.job_directories(job_id)
        if not all(directory.is_dir() for directory in directories):
            return None
        try:
            memberships = self._memberships(identity)
        except GovernorError:
            return None
        for hierarchy, directory in zip(self.hierarchies, directories, strict=True):
            if memberships.get(hierarchy.key) != hierarchy.cgroup_path(directory):
                return None
        if not identity.is_running():  # the pid read is this very process, and it runs
            return None
        applied = self._applied_limits(job_id)
        paths = tuple(str(d) for d in directories)
        return Attachment(
            self.version, paths, applied, memory_charge_moved=self._charge_moved_on_entry(job_id)
        )

    def usage(self, job_id: str) -> Usage:
        """The job's counters; readable after its process exited, until release()."""
        directories = self.job_directories(job_id)
        if not any(directory.is_dir() for directory in directories):
            path = directories[0] if directories else self.root
            raise GovernorError(errno.ENOENT, f"there is no job cgroup {path}", path)
        return self._read_usage(job_id)

    def release(self, job_id: str, recorded: Iterable[str] | None = None) -> bool:
        """Remove the job's cgroups. False (and nothing raised) while a process is still in
        one; True once none is left. `recorded`: the directories its attach recorded, for a
        caller whose parent cgroup may not be the one the job was made under (`ffrtmp
        release`); only those named after the job are removed, which ffrtmp made."""
        if recorded is None:
            directories = self.job_directories(job_id)
        else:
            require_job_name(job_id)
            directories = tuple(p for p in map(Path, recorded) if p.name == job_id)
        all_gone = True
        for directory in directories:
            try:
                self.files.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as err:
                if err.errno == errno.EBUSY:
                    all_gone = False
                    continue
                raise wrapped_error(err, "remove job cgroup", directory) from err
        return all_gone

    def move_out(
        self, identity: ProcessIdentity, job_id: str, origin: dict[str, str] | None
    ) -> dict[str, str]:
        """Move a governed process out of its job cgroups: back to `origin` (the cgroups it came
        from) where that still exists, else to its parent process's cgroup, else to the root
        of the hierarchy. Returns where it went per hierarchy name; raises GovernorError."""
        self._ready()
        directories = self.job_directories(job_id)
        job_paths = {h.cgroup_path(d) for h, d in zip(self.hierarchies, directories, strict=True)}
        parent = self._parent_memberships(identity)
        went: dict[str, str] = {}
        for hierarchy in self.hierarchies:
            choices = [(origin or {}).get(hierarchy.key), parent.get(hierarchy.key)]
            places = [
                p for p in choices if p and p not in job_paths and self._is_cgroup_of(hierarchy, p)
            ]
            target = (places or [hierarchy.mount_root])[0]
            procs = hierarchy.directory(target) / "cgroup.procs"
            try:
                self.files.write(procs, str(identity.pid))
            except OSError as err:
                raise wrapped_error(err, f"move {identity} back to", procs) from err
            went[hierarchy.name] = target
        return went

    def _parent_memberships(self, identity: ProcessIdentity) -> dict[str, str]:
        try:
            stat = (self.proc_root / str(identity.pid) / "stat").read_bytes()
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            return read_proc_cgroups(self.proc_root / str(ppid) / "cgroup")
        except (OSError, ValueError, IndexError):
            return {}

    def leftovers(self) -> dict[str, list[int]]:
        """The job cgroups under our parent (only names ffrtmp generates), each with the pids
        still in it: at start-up the daemon adopts the running ones and releases the rest."""
        found: dict[str, set[int]] = {}
        for hierarchy in self.hierarchies:
            try:
                entries = list(os.scandir(hierarchy.parent))
            except FileNotFoundError:
                continue
            except OSError as err:
                raise wrapped_error(err, "list", hierarchy.parent) from err
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and is_job_name(entry.name):
                    pids = found.setdefault(entry.name, set())
                    pids.update(self._pids_in(Path(entry.path)))
        return {name: sorted(pids) for name, pids in sorted(found.items())}

    # Version-specific parts.

    def _find_hierarchies(self, parent: str | None) -> tuple[Hierarchy, ...]:
        raise NotImplementedError

    def _prepare_parent(self) -> None:
        """Create the parent cgroup and make it able to hold limited job cgroups."""
        raise NotImplementedError

    def _limit_writes(self, job_id: str, limits: Limits) -> list[tuple[Path, str]]:
        """The (file, text) writes that set `limits` on the job, in the order to write them."""
        raise NotImplementedError

    def _parent_weight_file(self) -> tuple[Path, Callable[[int], str]]:
        """The parent's CPU weight file, and the text that file takes for a (v2) weight."""
        raise NotImplementedError

    def _reads_back_as(self, path: Path, written: str, read: str) -> bool:
        return read == written

    def _move_charge_on_entry(self, job_id: str) -> bool:
        """Ask the kernel to move the memory a process was charged before along with it into
        the job cgroup; True when it will. cgroup v2 has no way to: False."""
        return False

    def _charge_moved_on_entry(self, job_id: str) -> bool | None:
        """Whether a process already in the job cgroup brought its charge along."""
        return False

    def _applied_limits(self, job_id: str) -> Limits:
        """The job's limits as its files hold them now."""
        raise NotImplementedError

    def _read_usage(self, job_id: str) -> Usage:
        raise NotImplementedError

    # Shared helpers.

    def _ready(self) -> None:
        if self._problem is not None:
            raise self._problem
        missing = {parent for parent in self.parents if not parent.is_dir()}
        self._prepare_parent()
        if missing or not self._parent_weight_settled:
            settle_parent_weight(self, created=missing)
            self._parent_weight_settled = True

    def _apply_limits(self, job_id: str, limits: Limits) -> None:
        """Write every limit, then read each back: a value the kernel did not take is an error."""
        writes = self._limit_writes(job_id, limits)
        for path, text in writes:
            self._write(path, text)
        for path, text in writes:
            read = self._read(path).strip()
            if not self._reads_back_as(path, text, read):
                raise GovernorError(
                    errno.EIO, f"{path} reads back as {read!r} after {text!r} was written", path
                )

    def _refuse_read_only(self, mount: Path) -> None:
        try:
            read_only = bool(os.statvfs(mount).f_flag & os.ST_RDONLY)
        except OSError as err:
            raise wrapped_error(err, "inspect", mount) from err
        if read_only:
            raise GovernorError(
                errno.EROFS, f"the cgroup filesystem at {mount} is read-only", mount
            )

    def _make_directory(self, path: Path) -> bool:
        """Create one cgroup directory; False if it already existed."""
        try:
            self.files.mkdir(path)
        except FileExistsError:
            return False
        except OSError as err:
            raise wrapped_error(err, "create cgroup", path) from err
        return True

    def _make_directories(self, top: Path, path: Path) -> None:
        """Create `path` and any missing cgroup between it and `top` (which exists)."""
        missing = []
        while path != top and not path.is_dir():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            self._make_directory(directory)

    def _remove_directories(self, paths: Iterable[Path]) -> None:
        for path in paths:
            try:
                self.files.rmdir(path)
            except OSError as err:
                log.warning("could not remove cgroup %s after a failed attach: %s", path, err)

    def _read(self, path: Path) -> str:
        try:
            return self.files.read(path)
        except OSError as err:
            raise wrapped_error(err, "read", path) from err

    def _counter(self, path: Path, key: str | None = None) -> int | None:
        """A number from a counter file: the whole file, or its `key value` line of `key`;
        None when this kernel does not offer it."""
        text = self._read_optional(path)
        return int_or_none(text) if key is None else parse_keyed(text).get(key)

    def _read_optional(self, path: Path) -> str | None:
        try:
            return self.files.read(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise wrapped_error(err, "read", path) from err

    def _write(self, path: Path, text: str) -> None:
        try:
            self.files.write(path, text)
        except OSError as err:
            raise wrapped_error(err, f"write {text!r} to", path) from err

    def _pids_in(self, directory: Path) -> set[int]:
        text = self._read_optional(directory / "cgroup.procs") or ""
        return {int(line) for line in text.split()}

    def _own_cgroups(self) -> dict[str, str]:
        """The daemon's own cgroups, which the default parent is placed below."""
        try:
            return read_proc_cgroups(self.own_cgroup_file)
        except OSError as err:
            raise wrapped_error(err, "read", self.own_cgroup_file) from err

    def _memberships(self, identity: ProcessIdentity) -> dict[str, str]:
        try:
            return read_proc_cgroups(self.proc_root / str(identity.pid) / "cgroup")
        except FileNotFoundError:
            raise TargetGone(identity, "(no /proc entry)") from None
        except OSError as err:
            raise wrapped_error(err, "read", self.proc_root / str(identity.pid) / "cgroup") from err

    def _verify_membership(self, identity: ProcessIdentity, directories: Iterable[Path]) -> None:
        memberships = self._memberships(identity)
        if not identity.is_alive():
            raise TargetGone(identity, "right after it was moved into its cgroup")
        for hierarchy, directory in zip(self.hierarchies, directories, strict=True):
            expected = hierarchy.cgroup_path(directory)
            actual = memberships.get(hierarchy.key)
            if actual != expected:
                if not identity.is_running():
                    # It exited between the check and the move: the kernel ignored the write.
                    raise TargetGone(identity, "while it was being moved into its cgroup")
                raise GovernorError(
                    errno.EIO,
                    f"{identity} was written to {directory}/cgroup.procs but its "
                    f"{hierarchy.name} cgroup is {actual}",
                    directory,
                )

    def _stale_moves(
        self, memberships: dict[str, str], directories: Iterable[Path]
    ) -> list[tuple[Hierarchy, str | None]]:
        """For each hierarchy where the process already sits in its job cgroup, where to put
        it back should the attach fail."""
        pairs = [(h, h.cgroup_path(d)) for h, d in zip(self.hierarchies, directories, strict=True)]
        if all(memberships.get(h.key) != path for h, path in pairs):
            return []  # the common case, on the way of every new process to its limits
        job_paths = {path for _, path in pairs}
        ours = (memberships.get(h.key) for h in self.hierarchies)
        elsewhere = [path for path in ours if path is not None and path not in job_paths]
        stale = []
        for hierarchy, job_path in pairs:
            if memberships.get(hierarchy.key) != job_path:
                continue
            places = [p for p in elsewhere if self._is_cgroup_of(hierarchy, p)]
            stale.append((hierarchy, (places or [hierarchy.cgroup_path(hierarchy.parent)])[0]))
        return stale

    @staticmethod
    def _is_cgroup_of(hierarchy: Hierarchy, cgroup_path: str) -> bool:
        try:
            return hierarchy.directory(cgroup_path).is_dir()
        except ValueError:  # outside this hierarchy's mount
            return False

    def _undo_moves(
        self, identity: ProcessIdentity, moved: list[tuple[Hierarchy, str | None]]
    ) -> None:
        """Put a partly moved process back where it was, so no cgroup keeps it half-governed."""
        for hierarchy, original in moved:
            if original is None:
                log.warning(
                    "%s cannot go back: its %s cgroup was unknown", identity, hierarchy.name
                )
                continue
            try:
                self.files.write(hierarchy.directory(original) / "cgroup.procs", str(identity.pid))
            except (OSError, ValueError) as err:
                log.warning(
                    "could not move %s back to %s cgroup %s: %s",
                    identity,
                    hierarchy.name,
                    original,
                    err,
                )


def _origin(moved: list, job_paths: set[str]) -> dict[str, str]:
    """Per hierarchy, the cgroup the process came from: the one it was in, or, when it already
    sat in its job cgroup (an attempt cut short), where a failure would have put it back."""
    origin: dict[str, str] = {}
    for hierarchy, original in moved:
        if original is not None and original not in job_paths:
            origin.setdefault(hierarchy.key, original)
    return origin
