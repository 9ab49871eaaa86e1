"""Model presets (HF ``EsmForMaskedLM``) and model loading."""
