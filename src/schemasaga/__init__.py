"""schemasaga: event-sourced table management for databases you own."""

__version__ = "0.1.0"
