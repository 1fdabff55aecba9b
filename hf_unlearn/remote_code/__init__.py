"""Model code that travels inside saved model folders, as transformers' "remote code".

A model built here is saved with these files beside its weights (``save_pretrained`` copies the module of a class
registered with ``register_for_auto_class``) and an ``auto_map`` in its config.json, so that
``AutoModelForImageClassification.from_pretrained(folder_or_repo, trust_remote_code=True)`` and
``pipeline("image-classification", model=..., trust_remote_code=True)`` load it where hf_unlearn is not installed.
Each module therefore imports only torch, transformers and its sibling modules (relative imports), never hf_unlearn.
`hf_unlearn.models` registers the classes with the Auto classes, so hf_unlearn itself loads such folders without
``trust_remote_code``.
"""
