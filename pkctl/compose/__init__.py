"""Compose projects on pkube: model.py (the file), convert.py (-> Kubernetes objects), runner.py, commands.py."""
