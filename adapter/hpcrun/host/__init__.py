"""Probing the host (the node hpcrun runs on).  Every probe takes a root path for tests."""
