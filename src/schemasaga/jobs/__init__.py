"""The procrastinate app and its tasks. Tasks are thin: they load what they need and call a saga."""
