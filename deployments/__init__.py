"""Ray Serve deployments: the HTTP edge. Thin: parse, call a handle or a repository, map errors."""
