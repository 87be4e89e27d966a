"""Every default of ffrtmp, defined once; the CLI options and the code both read them here."""

import os
from pathlib import Path

# Discovery
SCAN_INTERVAL_SECONDS = 10.0
TARGET_COMMANDS = ("ffmpeg", "gst-launch-1.0")
DISCOVERY_MODE = "auto"  # events | poll | auto

# Usage while running: how often governed jobs' cgroup counters are read and stored (0: never)
USAGE_INTERVAL_SECONDS = 10.0

# Limits given to a governed process
CPU_QUOTA_PERCENT = None  # percent of one core; None = no quota ("max")
CPU_WEIGHT = 100  # 1..10000, cgroup v2 scale
MEMORY_LIMIT_MB = None  # None = no limit

# cgroups
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT_NAME = "ffrtmp"
# The weight of that parent against its siblings (cgroup v2 scale; v1 shares are derived, 10240):
# all governed jobs together weigh as much as ten ungoverned threads, not one (docs/cgroups.md).
CGROUP_PARENT_CPU_WEIGHT = 1000

# Retry
RETRY_ENABLED = True
RETRY_MAX_ATTEMPTS = 3
RETRY_INITIAL_DELAY_SECONDS = 1.0
RETRY_MULTIPLIER = 2.0
RETRY_MAX_DELAY_SECONDS = 300.0
RETRY_JITTER = 0.1  # the delay is drawn uniformly from [d*(1-j), d*(1+j)], then capped
RETRY_CLAIM_SECONDS = 60.0

# Health
HEALTH_DEGRADED_SCAN_FAILURES = 3
HEALTH_DEGRADED_ATTACH_FAILURES = 10
HEALTH_UNHEALTHY_SCAN_FAILURES = 5
HEALTH_STALE_SCAN_SECONDS = 120.0
HEALTH_SNAPSHOT_INTERVAL_SECONDS = 60.0
HEALTH_NO_DAEMON_SECONDS = 120.0

# Retention of finished history
RETENTION_SECONDS = 30 * 86400.0
PRUNE_BATCH_ROWS = 500

# HTTP
HTTP_ADDRESS = "127.0.0.1:9464"

# Shipping to the fleet's central database (`watch --ship-to`, `ffrtmp ship`; docs/fleet.md)
SHIP_INTERVAL_SECONDS = 5.0  # a shipper running on ships this often
SHIP_MIN_INTERVAL_SECONDS = 0.1
SHIP_BATCH_SIZE = 20000  # changed rows per central transaction (docs/fleet.md, the figures)

# Database
DB_ENV_VAR = "FFRTMP_DB"
DB_FILE_NAME = "ffrtmp.db"
SQLITE_BUSY_TIMEOUT_MS = 5000


def default_db_path() -> Path:
    """Where the database lives when neither --db nor FFRTMP_DB says otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/ffrtmp") / DB_FILE_NAME
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "ffrtmp" / DB_FILE_NAME


# Kernel process-events connector (netlink)
PROC_EVENTS_RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024  # room for a fork storm between two reads
PROC_EVENTS_MAX_PER_READ = 4096  # events returned by one read_events() call at most
PROC_EVENTS_PER_BATCH = 64  # events the daemon handles before it looks whether other work is due
PROC_EVENTS_ACK_TIMEOUT_SECONDS = 1.0  # wait for the kernel to confirm the subscription

# Watch config file
CGROUP_VERSION = "auto"  # auto | v1 | v2
FILTER_MIN_RUNTIME_SECONDS = 0.0  # attach at once
FILTER_MAX_RUNTIME_SECONDS = None  # no maximum

# Job ids and their cgroups
JOB_ID_PREFIXES = ("auto", "manual", "run")  # auto: watch; manual: attach; run: run

# Operator read commands
CLI_LIST_LIMIT = 100  # rows a list command prints unless --limit says otherwise
EVENTS_BACKLOG = 10  # `ffrtmp events` prints this many of the newest before following
EVENTS_POLL_SECONDS = 0.5  # `events --follow` looks for new rows this often (one short read)
EVENTS_POLL_BATCH = 500  # rows of each table one poll reads at most; the next poll reads on

# Operator surface: HTTP, metrics
HTTP_REQUEST_TIMEOUT_SECONDS = 5.0  # a client that sends nothing holds one server thread, no more
METRICS_STORE_CACHE_SECONDS = 2.0  # retry-queue depths read from SQLite at most this often
