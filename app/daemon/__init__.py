"""`ffrtmp watch`: the daemon, one loop that owns time (`loop.Daemon`), composed of parts a
reader can name, each in a module of its own: admission, events, recovery, wall_clock, retries,
snapshots, pruning, reload, errors, and the read-only view its readers get (see loop's
docstring)."""

from ffrtmp.daemon.loop import JOB_PREFIX, Daemon, default_notifier

__all__ = ["JOB_PREFIX", "Daemon", "default_notifier"]
