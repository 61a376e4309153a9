"""Units executed per region: the engine, providers, classification and cross-region analysis."""
