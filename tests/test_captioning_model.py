"""CaptioningRNN and CaptioningSolver: CS231n's published loss values, numeric gradients, overfitting."""

import numpy as np
import pytest

from common.captioning_solver import CaptioningSolver
from common.classifiers.rnn import CaptioningRNN
from common.gradient_check import eval_numerical_gradient


def linspace_model(cell_type, feature_range):
    """CS231n's check: every parameter and input set by linspace, so the loss is a published number."""
    N, D, W, H, T = 10, 20, 30, 40, 13
    word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
    V = len(word_to_idx)
    model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell_type, dtype=np.float64)
    for k, v in model.params.items():
        model.params[k] = np.linspace(-1.4, 1.3, num=v.size).reshape(*v.shape)
    features = np.linspace(*feature_range, num=N * D).reshape(N, D)
    captions = (np.arange(N * T) % V).reshape(N, T)
    return model, features, captions


@pytest.mark.parametrize(
    "cell_type, feature_range, expected", [("rnn", (-1.5, 0.3), 9.83235591003), ("lstm", (-0.5, 1.7), 9.82445935443)]
)
def test_published_loss_values(cell_type, feature_range, expected):
    model, features, captions = linspace_model(cell_type, feature_range)
    loss, _ = model.loss(features, captions)
    assert abs(loss - expected) < 1e-9


@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_gradients_numeric(cell_type):
    rng = np.random.default_rng(0)
    word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3, "dog": 4}
    N, D, W, H, T = 2, 3, 4, 5, 6
    model = CaptioningRNN(
        word_to_idx, input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell_type, dtype=np.float64, seed=1
    )
    features = rng.standard_normal((N, D))
    captions = rng.integers(len(word_to_idx), size=(N, T))
    loss, grads = model.loss(features, captions)
    for name in sorted(model.params):
        num = eval_numerical_gradient(lambda _: model.loss(features, captions)[0], model.params[name], verbose=False)
        # float64, centred differences with h=1e-5: round-off leaves ~1e-10 absolute error, which is a
        # large *relative* error on entries near zero, so compare with rtol and an absolute floor
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell_type", ["rnn", "lstm"])
def test_solver_overfits_and_sample_reproduces(cell_type):
    rng = np.random.default_rng(0)
    word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i + 3 for i in range(8)}}
    N, D, T = 6, 8, 7
    captions = np.zeros((N, T), dtype=np.int64)
    for n in range(N):
        length = rng.integers(2, T - 2)
        captions[n, 0] = 1
        captions[n, 1 : 1 + length] = rng.integers(3, 11, size=length)
        captions[n, 1 + length] = 2
    data = {"train_captions": captions, "train_image_idxs": np.arange(N), "train_features": rng.standard_normal((N, D))}
    model = CaptioningRNN(word_to_idx, input_dim=D, wordvec_dim=16, hidden_dim=32, cell_type=cell_type, seed=0)
    solver = CaptioningSolver(
        model,
        data,
        update_rule="adam",
        num_epochs=150,
        batch_size=N,
        optim_config={"learning_rate": 5e-3},
        verbose=False,
        seed=0,
    )
    solver.train()
    assert solver.loss_history[-1] < 0.05 < solver.loss_history[0]
    sampled = model.sample(data["train_features"], max_length=T - 1)
    np.testing.assert_array_equal(sampled, captions[:, 1:])  # the memorised captions, <END> then <NULL>


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="cell_type"):
        CaptioningRNN({"<NULL>": 0}, cell_type="gru")
    with pytest.raises(ValueError, match="<NULL>"):
        CaptioningRNN({"cat": 0})
    model = CaptioningRNN({"<NULL>": 0, "cat": 1}, input_dim=4)
    with pytest.raises(ValueError, match="<START>"):
        model.sample(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"features must be \(N, 4\)"):
        model.loss(np.zeros((2, 3)), np.zeros((2, 5), dtype=int))
    data = {
        "train_captions": np.zeros((2, 3), int),
        "train_image_idxs": np.arange(2),
        "train_features": np.zeros((2, 4)),
    }
    with pytest.raises(ValueError, match="'learning_rat'"):
        CaptioningSolver(model, data, learning_rat=1e-3)
