"""The agent's I/O: TAP devices, sockets, namespaces, threads."""
