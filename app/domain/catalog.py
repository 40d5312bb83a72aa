"""The fixed vocabularies of the product (contract §3 and §5)."""

BACKENDS = ("mysql", "postgres", "mssql")
DEFAULT_PORTS = {"mysql": 3306, "postgres": 5432, "mssql": 1433}
# Each backend has exactly one CDC mode (contract §5, sync policy).
CDC_MODES = {"mysql": "binlog", "postgres": "logical", "mssql": "cdc"}
SYNC_MODES = ("poll", "binlog", "logical", "cdc")
DEFAULT_SYNC_MODE = "poll"
DEFAULT_SYNC_INTERVAL = 30
MIN_SYNC_INTERVAL, MAX_SYNC_INTERVAL = 5, 3600

# size -> (taskCpu units where 256 = 0.25 vCPU, taskMemoryMb)
INSTANCE_SIZES = {
    "nano": (256, 512),
    "small": (512, 1024),
    "medium": (1024, 2048),
    "large": (2048, 4096),
    "xlarge": (4096, 8192),
    "2xlarge": (8192, 16384),
}
LOG_LEVELS = ("info", "debug", "warn", "error")
BUILD_COMPUTE_TYPES = ("BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_XLARGE", "BUILD_GENERAL1_2XLARGE")
TAG_COLORS = ("gray", "red", "orange", "yellow", "green", "blue", "purple", "pink")
HEALTH_STATUSES = ("ok", "degraded", "unreachable", "cap_exceeded")
STATUSES = (
    "registered", "testing_connection", "queued", "building", "deploying", "running",
    "pausing", "paused", "resuming", "failed", "stopped", "terminated", "terminating",
)
PLANS = ("free", "pro", "teams", "enterprise")
CUSTOM_DOMAIN_PLANS = ("teams", "enterprise")


def allowed_sync_modes(backend: str, sync_mode: str) -> list[str]:
    """What databases of a connection with this policy may use."""
    return ["poll"] if sync_mode == "poll" else ["poll", CDC_MODES[backend]]
