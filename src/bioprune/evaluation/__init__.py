"""bioprune.evaluation."""
