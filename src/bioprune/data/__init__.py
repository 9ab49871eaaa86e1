"""Alphabets, sequence readers, the corpus store, masking and batching."""
