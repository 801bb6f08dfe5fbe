"""``moma-hub`` commands, one file per command."""
