"""Model outputs as JSON values: every line a client prints or sends stays valid JSON."""

import math


def json_number(value, digits: int = 6):
    """A float rounded for JSON, or None (null) when it is NaN or infinite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
