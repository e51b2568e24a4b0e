"""The model file and what it describes: the card, the safetensors format, the shipped and user models, terminology."""
