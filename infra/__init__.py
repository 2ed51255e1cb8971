"""Platform plumbing: connection, data converter, embedded dev server, logging."""
