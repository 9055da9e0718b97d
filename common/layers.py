"""NumPy layers as forward/backward pairs: ``X_forward(...) -> (out, cache)``, ``X_backward(dout, cache) -> grads``."""
import numpy as np

# ============================================================================ core layers (issue 3)


# ============================================================================ convolutional layers (issue 4)
# conv/pool (naive), spatial batchnorm, spatial groupnorm. Everything below this line belongs to issue 4.
