"""Tasks: one module per task, each registered with @register_task (see tasks/registry.py).

The registry imports every public module here that is not listed below when a task is first asked
for, so adding a task is adding one file — and importing `tasks.registry` stays cheap.
"""
INFRASTRUCTURE = ("protocol", "registry", "cache", "files")
