"""PEFT Studio: see where the trainable part of a parameter-efficient fine-tuning method goes."""

from .core.threads import set_wait_policy as _set_wait_policy

_set_wait_policy()  # OpenMP reads it once, when torch is first imported: see core/threads.py
