"""`hf-unlearn tune`: Optuna studies over an unlearning run's settings, scored on a validation split.

space.py: search-space ranges and the recipe's overrides (each method declares its space in hf_unlearn.registry); objective.py: the validation objective per epoch (ToW, or reference-free); adapter.py: the shared
original and reference from the pipeline; study.py: the study, its storage and its outputs. See docs/tuning.md.
"""
