"""Generic PyTorch training: the fit/evaluate loop, the optimiser factory, parameter helpers, and the one
checkpoint and cache scheme."""
