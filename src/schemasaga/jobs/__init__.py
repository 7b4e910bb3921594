"""The job queue (procrastinate, in the core database): the saga task, deferring it, keeping jobs moving."""
