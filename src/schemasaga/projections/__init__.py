"""Read models, updated in the same transaction as the append and rebuildable from the events."""
