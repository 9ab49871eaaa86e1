"""bioprune.report."""
