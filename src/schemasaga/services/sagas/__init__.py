"""One saga per change kind: explicit steps, each with its compensation, progress kept as events."""
