"""Multi-master replication between xdnsd nodes (see ../shared/ARCHITECTURE.md)."""
