"""Local mode: a lab of network namespaces standing in for hosts on an underlay."""
