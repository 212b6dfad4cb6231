"""Admission: what the apiserver checks about a write beyond the kind's own validation (Kubernetes' admission
plugins). `podsecurity` is Pod Security Admission."""
