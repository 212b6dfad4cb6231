"""`pkube COMPONENT [flags]`: starts one component (like hyperkube / k3s' executor).

Each component package exposes `main(argv) -> int` in its `main` module and an
`async def run(config, ready)` that the launcher or tests can call in-process.
"""
from __future__ import annotations

import importlib
import sys

COMPONENTS = {
    "apiserver": "apiserver.main",
    "controller-manager": "controllers.main",
    "scheduler": "scheduler.main",
    "kubelet": "kubelet.main",
    "proxy": "proxy.main",
    "dns": "proxy.dns_main",
    "ingress": "ingress.main",
    "group": "launcher.group",  # several of the above in one process
}
# Components a user starts on demand, not parts of a cluster (`pkctl cluster up` runs the ones above).
ON_DEMAND = {
    "dashboard": "dashboard.main",  # `pkctl dashboard`
}
RUNNABLE = {**COMPONENTS, **ON_DEMAND}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: pkube COMPONENT [flags]\n\ncomponents:\n  " + "\n  ".join(RUNNABLE))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in RUNNABLE:
        print(f"pkube: unknown component {name!r}; one of: {', '.join(RUNNABLE)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(RUNNABLE[name])
    except ModuleNotFoundError as e:
        print(f"pkube: component {name!r} is not available in this build ({e.name})", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
