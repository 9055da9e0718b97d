"""Sandwich layers: common forward/backward combinations (affine-relu, conv-relu-pool, ...)."""

# ============================================================================ fully connected (issue 3)


# ============================================================================ convolutional (issue 4)
