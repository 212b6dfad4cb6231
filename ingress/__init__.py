"""pkube ingress: the ingress controller (nginx data plane)."""
