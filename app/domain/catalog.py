"""The fixed vocabularies of the product (contract §3 and §5).

The source engines (names, ports, CDC modes) live in app.contracts.backends,
which the data plane shares; this module holds what only the control plane uses.
"""

from app.contracts.backends import POLL, sync_modes

DEFAULT_SYNC_MODE = POLL
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
    """What databases of a connection with this policy may use (contract §5, sync policy)."""
    return [POLL] if sync_mode == POLL else list(sync_modes(backend))
