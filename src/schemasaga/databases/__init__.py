"""The registry of BYODBs: event-sourced (stream ``Database$<name>``), with encrypted credentials."""
