"""Training-dynamics experiments: how networks fit, memorise and generalise (each returns data to plot)."""

from common.experiments.dynamics.fitting import (
    compare_depths,
    damped_sine,
    equal_size_architectures,
    fit_function,
    function_data,
)
from common.experiments.dynamics.generalization import param_count_sweep, random_label_experiment
from common.experiments.dynamics.landscape import (
    batch_size_sweep,
    hessian_top_eigenvalue,
    input_gradient_norm,
    interpolate_models,
    jacobian_norm,
    layer_slices,
    pca_project,
    weight_trajectories,
)
from common.experiments.dynamics.training import (
    TensorData,
    TrainConfig,
    loss_function,
    make_mlp,
    mlp_param_count,
    mnist_tensors,
    shuffle_labels,
    train_model,
    width_for_param_count,
)

__all__ = [
    "compare_depths",
    "damped_sine",
    "equal_size_architectures",
    "fit_function",
    "function_data",
    "param_count_sweep",
    "random_label_experiment",
    "batch_size_sweep",
    "hessian_top_eigenvalue",
    "input_gradient_norm",
    "interpolate_models",
    "jacobian_norm",
    "layer_slices",
    "pca_project",
    "weight_trajectories",
    "TensorData",
    "TrainConfig",
    "loss_function",
    "make_mlp",
    "mlp_param_count",
    "mnist_tensors",
    "shuffle_labels",
    "train_model",
    "width_for_param_count",
]
