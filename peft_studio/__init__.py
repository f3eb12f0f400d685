"""PEFT Studio: see where the trainable part of a parameter-efficient fine-tuning method goes."""
