"""sandboxctl.sentry.launch: the host layer (namespaces, mounts, ids, caps, rlimits, cgroups), one module per concern."""
