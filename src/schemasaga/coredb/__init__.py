"""The core PostgreSQL database: the unit of work's transaction, the read models and the read side,
migrations, and the embedded server used when none is configured."""
