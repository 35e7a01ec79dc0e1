"""Sans-IO logic of the agent: no sockets, no clock, no printing."""
