"""The tiny generation study of the tests: a few DDPM training steps, two methods, a handful of
samples (seconds per job on a CPU)."""

from __future__ import annotations

TINY_GEN = {
    "name": "tiny-gen",
    "task": "generation",
    "dataset": "digits",
    "model": "ddpm_tiny",
    "classifier": "cnn",
    "classifier_train": {"epochs": 1},
    "forget": ["class:3"],
    "seeds": [0],
    "train": {"steps": 3, "batch_size": 32, "warmup": 1},
    "methods": [
        {"name": "ddpm_finetune", "config": {"steps": 2, "batch_size": 16}},
        {"name": "ddpm_salun", "config": {"steps": 2, "batch_size": 16}},
    ],
    "evaluation": {"n_forget": 4, "n_per_class": 2, "steps": 2, "bootstrap": 5, "grid_per_class": 2},
    "device": "cpu",
}
