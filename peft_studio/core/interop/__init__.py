"""Exchange with the outside: Hugging Face PEFT folders and the accelerate recipe."""
