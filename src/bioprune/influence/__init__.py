"""bioprune.influence."""
