"""bioprune.selection."""
