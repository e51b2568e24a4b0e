"""Training a model: datasets, augmentation, the training loop."""
