"""The pure domain: the Table aggregate, its events and commands, columns. No I/O here."""
