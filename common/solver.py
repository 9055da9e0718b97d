"""Solver: trains a NumPy classification model with minibatch first-order updates and records histories."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from common import optim
from common.config import cache_dir


class Solver:
    """Minibatch training of a model with ``params`` (dict name -> array) and ``loss(X, y=None)``.

    ``model.loss(X)`` returns scores (N, C); ``model.loss(X, y)`` returns ``(loss, grads)`` with
    ``grads`` keyed like ``params``.

    ``data``: dict with ``X_train, y_train, X_val, y_val`` (X of any shape (N, ...), y (N,) ints).

    Keywords (anything else is a ``ValueError`` naming it):
    - update_rule: name of a rule in ``common.optim`` ('sgd', 'sgd_momentum', 'rmsprop', 'adam')
      or a callable ``update(w, dw, config) -> (next_w, config)``.
    - optim_config: hyperparameters passed to the rule; each parameter gets its own copy. With a built-in
      rule, a key the rule does not know (``optim.HYPERPARAMETERS``) is a ``ValueError``.
    - lr_decay: the learning rate is multiplied by this after every epoch.
    - batch_size, num_epochs.
    - num_train_samples: training samples used to estimate train accuracy each epoch (None = all).
    - num_val_samples: validation samples used for validation accuracy (None = all).
    - checkpoint_name: if set, ``{checkpoint_name}_epoch_{e}.pt`` is written after each epoch (a relative
      name under ``cache_dir()/solver/``, an absolute one as given) with ``CacheEntry.save`` (atomic, read back
      with ``CacheEntry(path).load()``): a dict of ``params``, ``bn_params`` (when the model has any), the
      settings (``update_rule`` when it is a name, ``optim_config``, ``lr_decay``, ``batch_size``,
      ``num_epochs``, ``num_train_samples``, ``num_val_samples``, ``seed``), ``optim_configs`` (each
      parameter's optimiser state), ``epoch``, ``best_val_acc`` and the three histories. No objects, no code.
    - print_every: print the loss every this many iterations when verbose.
    - verbose: print progress.
    - seed: seed of the solver's own generator (minibatches, accuracy subsamples).
    - progress: show a tqdm bar over iterations (an addition to CS231n's keywords).

    An empty training or validation set is a ``ValueError`` (the best params are chosen by validation
    accuracy, which needs at least one sample).

    After ``train()``: ``loss_history`` (per iteration), ``train_acc_history``, ``val_acc_history``
    (per epoch, plus one before training), ``best_val_acc`` and ``best_params``; the model's params
    are set to ``best_params`` (and a model's ``bn_params``, batchnorm's running averages, to the
    ones of that same epoch).
    """

    def __init__(self, model, data, **kwargs):
        _check_data(data)
        self.model = model
        self.X_train, self.y_train = data["X_train"], data["y_train"]
        self.X_val, self.y_val = data["X_val"], data["y_val"]

        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = dict(kwargs.pop("optim_config", None) or {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = int(kwargs.pop("batch_size", 100))
        self.num_epochs = kwargs.pop("num_epochs", 10)
        self.num_train_samples = kwargs.pop("num_train_samples", 1000)
        self.num_val_samples = kwargs.pop("num_val_samples", None)
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.print_every = kwargs.pop("print_every", 10)
        self.verbose = kwargs.pop("verbose", True)
        self.progress = kwargs.pop("progress", False)
        self.seed = kwargs.pop("seed", None)
        if kwargs:
            names = ", ".join(repr(k) for k in kwargs)
            raise ValueError(f"Solver got unrecognized keyword argument(s) {names}")
        self._check_settings()

        self._update = optim.get_update_rule(self.update_rule)
        self.rng = np.random.default_rng(self.seed)
        self._reset()

    def _check_settings(self):
        """ValueError naming the first keyword whose value cannot work."""
        optim.check_config(self.update_rule, self.optim_config)  # also rejects an unknown update_rule
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.num_epochs < 0:
            raise ValueError(f"num_epochs must be >= 0, got {self.num_epochs}")
        for name in ("num_train_samples", "num_val_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive int or None (all samples), got {value!r}")

    def _reset(self):
        """Book-keeping: histories, best model, one optim config per parameter."""
        self.epoch = 0
        self.best_val_acc = 0.0
        self.best_params = {}
        self._best_bn_params = None
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    def _step(self):
        """One minibatch: forward, backward, one update of every parameter."""
        num_train = self.X_train.shape[0]
        batch_mask = self.rng.choice(num_train, self.batch_size, replace=num_train < self.batch_size)
        X_batch, y_batch = self.X_train[batch_mask], self.y_train[batch_mask]
        loss, grads = self.model.loss(X_batch, y_batch)
        self.loss_history.append(float(loss))
        for p, w in self.model.params.items():
            next_w, self.optim_configs[p] = self._update(w, grads[p], self.optim_configs[p])
            self.model.params[p] = next_w

    def _checkpoint_path(self):
        """``{checkpoint_name}_epoch_{epoch}.pt``: relative names under ``cache_dir()/solver``."""
        path = Path(f"{self.checkpoint_name}_epoch_{self.epoch}.pt")
        return path if path.is_absolute() else cache_dir() / "solver" / path

    def _save_checkpoint(self):
        if self.checkpoint_name is None:
            return
        # imported here: torch (under CacheEntry) is needed only when checkpoints are written
        from common.training.checkpoint import CacheEntry

        checkpoint = {
            "params": self.model.params,
            "update_rule": self.update_rule if isinstance(self.update_rule, str) else None,
            "optim_config": self.optim_config,
            "optim_configs": self.optim_configs,
            "lr_decay": self.lr_decay,
            "batch_size": self.batch_size,
            "num_epochs": self.num_epochs,
            "num_train_samples": self.num_train_samples,
            "num_val_samples": self.num_val_samples,
            "seed": self.seed,
            "epoch": self.epoch,
            "best_val_acc": self.best_val_acc,
            "loss_history": self.loss_history,
            "train_acc_history": self.train_acc_history,
            "val_acc_history": self.val_acc_history,
        }
        if getattr(self.model, "bn_params", None):
            checkpoint["bn_params"] = self.model.bn_params
        path = self._checkpoint_path()
        if self.verbose:
            print(f'Saving checkpoint to "{path}"')
        CacheEntry(path).save(checkpoint)  # atomic: a unique temporary file, renamed when complete

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of ``X`` classified as ``y``; on a random subsample of ``num_samples`` if given.

        Predicts in batches of ``batch_size`` (argmax of the scores). Returns a float in [0, 1].
        """
        N = X.shape[0]
        if N == 0:
            raise ValueError("X has no samples (N=0): accuracy is undefined on an empty set; pass at least one sample")
        if num_samples is not None and num_samples < N:
            mask = self.rng.choice(N, num_samples, replace=False)
            N, X, y = num_samples, X[mask], y[mask]
        y_pred = []
        for start in range(0, N, batch_size):
            scores = self.model.loss(X[start : start + batch_size])
            y_pred.append(np.argmax(scores, axis=1))
        return float(np.mean(np.concatenate(y_pred) == y))

    def _record_accuracy(self):
        train_acc = self.check_accuracy(self.X_train, self.y_train, num_samples=self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc or not self.best_params:
            self.best_val_acc = val_acc
            self.best_params = {k: v.copy() for k, v in self.model.params.items()}
            # batchnorm's running averages belong to the best model too
            self._best_bn_params = copy.deepcopy(getattr(self.model, "bn_params", None))
        return train_acc, val_acc

    def train(self):
        """Run ``num_epochs`` epochs of ``max(N // batch_size, 1)`` iterations; keep the best params."""
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = int(self.num_epochs * iterations_per_epoch)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_iterations, desc="Solver", leave=False)

        train_acc, val_acc = self._record_accuracy()
        if self.verbose:
            print(f"(Epoch 0 / {self.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
        for t in range(num_iterations):
            self._step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", val_acc=f"{val_acc:.3f}", refresh=False)
            if self.verbose and self.print_every and t % self.print_every == 0:
                print(f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")
            if (t + 1) % iterations_per_epoch == 0:
                self.epoch += 1
                for config in self.optim_configs.values():
                    if "learning_rate" in config:
                        config["learning_rate"] *= self.lr_decay
                train_acc, val_acc = self._record_accuracy()
                if bar is not None:  # the epoch's new validation accuracy, shown at once
                    bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", val_acc=f"{val_acc:.3f}")
                self._save_checkpoint()
                if self.verbose:
                    print(f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
        if bar is not None:
            bar.close()
        self.model.params = {k: v.copy() for k, v in self.best_params.items()}
        if self._best_bn_params is not None:
            self.model.bn_params = copy.deepcopy(self._best_bn_params)
        return self


def _check_data(data):
    """data holds X_train, y_train, X_val, y_val with as many labels as samples and at least one sample each."""
    for key in ("X_train", "y_train", "X_val", "y_val"):
        if key not in data:
            raise ValueError(f"data is missing {key!r}; it needs X_train, y_train, X_val and y_val")
    for split, what in (("train", "training"), ("val", "validation")):
        X, y = data[f"X_{split}"], data[f"y_{split}"]
        if len(X) != len(y):
            raise ValueError(f"data['X_{split}'] has {len(X)} samples but data['y_{split}'] has {len(y)}")
        if len(X) == 0:
            raise ValueError(
                f"data['X_{split}'] is empty: the Solver needs at least one {what} sample (it keeps "
                f"the params of the best validation accuracy); check how the data was split"
            )
