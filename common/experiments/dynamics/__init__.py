"""Training-dynamics experiments: how networks fit, memorise and generalise (each returns data to plot)."""

from common.experiments.dynamics.fitting import (
    add_outliers,
    compare_depths,
    damped_sine,
    equal_size_architectures,
    fit_function,
    function_data,
)
from common.experiments.dynamics.generalization import param_count_sweep, random_label_experiment
from common.experiments.dynamics.gradients import full_gradient_norm, gradient_norm, snapshot_gradient_norms
from common.experiments.dynamics.landscape import (
    batch_size_sweep,
    hessian_top_eigenvalue,
    input_gradient_norm,
    interpolate_models,
    jacobian_norm,
    layer_slices,
    pca_project,
    trajectory_distances,
    weight_trajectories,
)
from common.experiments.dynamics.mnist_cnn import cnn_trajectories
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
    "add_outliers",
    "compare_depths",
    "damped_sine",
    "equal_size_architectures",
    "fit_function",
    "function_data",
    "gradient_norm",
    "full_gradient_norm",
    "snapshot_gradient_norms",
    "param_count_sweep",
    "random_label_experiment",
    "batch_size_sweep",
    "hessian_top_eigenvalue",
    "input_gradient_norm",
    "interpolate_models",
    "jacobian_norm",
    "layer_slices",
    "pca_project",
    "trajectory_distances",
    "weight_trajectories",
    "cnn_trajectories",
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
