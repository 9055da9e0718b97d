"""CaptioningSolver: trains a CaptioningRNN on minibatches of (features, caption) pairs."""

from __future__ import annotations

import numpy as np

from common import optim


class CaptioningSolver:
    """Minibatch training of a captioning model with ``params`` and ``loss(features, captions)``.

    ``data``: a captioning dict (``common.experiments.captioning.load_captioning_data``): ``train_captions (N, T)``,
    ``train_image_idxs (N,)``, ``train_features (M, D)``, and the same for ``val_``.

    Keywords (anything else is a ``ValueError`` naming it): update_rule, optim_config, lr_decay (per
    epoch), batch_size, num_epochs, print_every, verbose, seed (the solver's own generator), progress
    (tqdm bar). After ``train()``: ``loss_history`` per iteration.
    """

    def __init__(self, model, data, **kwargs):
        self.model = model
        for key in ("train_captions", "train_image_idxs", "train_features"):
            if key not in data:
                raise ValueError(
                    f"data is missing {key!r}; load it with common.experiments.captioning.load_captioning_data"
                )
        self.data = data
        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = dict(kwargs.pop("optim_config", None) or {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = int(kwargs.pop("batch_size", 100))
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)
        self.progress = kwargs.pop("progress", False)
        self.seed = kwargs.pop("seed", None)
        if kwargs:
            raise ValueError(f"CaptioningSolver got unrecognized keyword argument(s) {', '.join(map(repr, kwargs))}")
        self._update = optim.get_update_rule(self.update_rule)
        optim.check_config(self.update_rule, self.optim_config)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        self.rng = np.random.default_rng(self.seed)
        self.epoch = 0
        self.loss_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    def _step(self):
        captions = self.data["train_captions"]
        idx = self.rng.choice(len(captions), self.batch_size, replace=len(captions) < self.batch_size)
        features = self.data["train_features"][self.data["train_image_idxs"][idx]]
        loss, grads = self.model.loss(features, captions[idx])
        self.loss_history.append(float(loss))
        for p, w in self.model.params.items():
            self.model.params[p], self.optim_configs[p] = self._update(w, grads[p], self.optim_configs[p])

    def train(self):
        """Run ``num_epochs`` epochs of ``max(N // batch_size, 1)`` iterations."""
        iterations_per_epoch = max(len(self.data["train_captions"]) // self.batch_size, 1)
        num_iterations = int(self.num_epochs * iterations_per_epoch)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_iterations, desc="CaptioningSolver", leave=False)
        for t in range(num_iterations):
            self._step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", refresh=False)
            if self.verbose and self.print_every and t % self.print_every == 0:
                print(f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")
            if (t + 1) % iterations_per_epoch == 0:
                self.epoch += 1
                for config in self.optim_configs.values():
                    if "learning_rate" in config:
                        config["learning_rate"] *= self.lr_decay
        if bar is not None:
            bar.close()
        return self
