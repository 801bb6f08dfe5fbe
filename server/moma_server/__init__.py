"""MoMa hub server: gRPC services, metadata and blob stores, curation, operator CLI."""
