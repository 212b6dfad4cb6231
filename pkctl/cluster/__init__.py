"""Local single-node mode: `pkctl cluster up|down|status|logs` and the supervisor behind it."""
