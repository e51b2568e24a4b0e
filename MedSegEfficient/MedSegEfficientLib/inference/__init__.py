"""From a volume and a model to labels on the input grid: preprocessing, tiling, the engine, the file pipeline."""
