"""`forge export`: take a trained run out of Forge as a PEFT adapter folder, a merged `from_pretrained` folder or
a GGUF file for llama.cpp, each with a Hugging Face model card made from the run (forge/export/command.py)."""
