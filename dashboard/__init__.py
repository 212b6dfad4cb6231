"""`pkube dashboard`: the web dashboard (issue 19).

A small aiohttp app: it serves the page (plain ES modules under web/, xterm.js and js-yaml from web/node_modules,
installed by scripts/install-deps.sh with `npm ci`) and proxies the Kubernetes API to the API server with the
user's kubeconfig credentials, like `kubectl proxy` (watch streams and the exec WebSocket included), so the page
speaks Kubernetes REST. Access needs the one-time login link it prints (a session cookie); see app.py.
"""
