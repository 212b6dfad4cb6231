"""Authorization: request info, RBAC, the authorizer chain, impersonation and access reviews."""
