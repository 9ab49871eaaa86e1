"""Model presets (HF ``EsmForMaskedLM``; ESM-C in ``esmc``), loading, describe, convert."""
