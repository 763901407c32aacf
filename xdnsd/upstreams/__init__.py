"""Mirroring zones to other DNS providers (Route 53, Azure DNS, RFC 2136 servers)."""
