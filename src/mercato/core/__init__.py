"""The shared kernel: configuration, database access, errors, HTTP plumbing, observability."""
