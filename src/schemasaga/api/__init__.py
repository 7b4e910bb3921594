"""HTTP API: the demo's four endpoints, unchanged, and the versioned REST API."""
