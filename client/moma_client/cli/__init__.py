"""``moma-client`` commands, one file per command."""
