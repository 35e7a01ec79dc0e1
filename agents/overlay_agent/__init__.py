"""pytest-overlay agent: runs on the hosts, stdlib only."""

__version__ = "0.1.0"
#: Version of the JSON-lines protocol spoken with the controller; bumped on any change.
PROTOCOL_VERSION = 1
