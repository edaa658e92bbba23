"""``functl serve``: the control plane, a versioned JSON API (OpenAPI 3.1 at
``/api/v1/openapi.json``) and a live dashboard at ``/``, separate from the gateway (the data
plane). The cluster is the source of truth; without one the server works read-only over a
functions.yaml and the bus. See docs/console.md.
"""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
