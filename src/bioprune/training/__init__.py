"""bioprune.training."""
