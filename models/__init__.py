"""Models: one file per model, each registered with @register_model (see models/registry.py).

The registry imports every public module here that is not listed below when a model is first asked
for, so adding a model is adding one file — and importing `models.registry` stays cheap.
"""
INFRASTRUCTURE = ("protocol", "registry", "blocks", "mamba_ops")
