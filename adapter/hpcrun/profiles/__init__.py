"""Site profiles: TOML files written by sysadmins that describe a cluster."""
