"""What an operator sees of the service: metrics (Prometheus), structured logs, readiness checks."""
