"""The table columns `pkctl get` prints per kind: shared with the apiserver's Tables, so they live in pklib."""
from pklib.columns import cells, headers, map_string, pod_status_and_restarts, selector_string

__all__ = ["cells", "headers", "map_string", "pod_status_and_restarts", "selector_string"]
