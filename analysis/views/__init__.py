"""The team's pages: server-rendered, login required, each read through indexed queries
(see analysis.pagedata). One module per page family."""

from .alerts import alert_detail, alert_list, alert_resolve
from .chains import chain_live, chain_live_fragment, height_detail, heights_grid
from .metrics import metrics
from .overview import overview
from .performance import chain_performance
from .validators import validator_detail, validator_watch

__all__ = [
    "alert_detail",
    "alert_list",
    "alert_resolve",
    "chain_live",
    "chain_live_fragment",
    "chain_performance",
    "height_detail",
    "heights_grid",
    "metrics",
    "overview",
    "validator_detail",
    "validator_watch",
]
