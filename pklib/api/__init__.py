"""Kubernetes semantics every component needs, written once (pkube's component-helpers).

Each module holds one rule set with Kubernetes' exact behaviour: `tolerations` (does a pod tolerate a taint),
`nodeaffinity` (node selectors and affinity terms), `qos` (a pod's QoS class), `podresources` (what a pod asks
for), `timefmt` (the API's timestamps), `wellknown` (the namespaces, labels, annotations and taint keys
several parts share). Components import these instead of keeping their own copies.
"""
