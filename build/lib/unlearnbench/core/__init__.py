"""Shared foundation: registry, config, data, models, training loop, checkpoints, provenance."""
