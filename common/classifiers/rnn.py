"""CaptioningRNN: image features -> initial hidden state -> RNN or LSTM over words -> vocabulary scores."""

import numpy as np

from common.layers import affine_backward, affine_forward
from common.rnn_layers import (
    lstm_backward,
    lstm_forward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_forward,
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)


class CaptioningRNN:
    """An image captioner (CS231n's CaptioningRNN) with a vanilla RNN or an LSTM.

    Image features ``(N, D)`` are projected to the initial hidden state ``h0 = features @ W_proj + b_proj``;
    each word is embedded (``W_embed (V, W)``), the recurrent cell runs over the caption, and
    ``W_vocab (H, V)`` scores the next word at every step. No regularisation.

    ``word_to_idx`` maps the V words to indices; it must contain ``<NULL>``, and ``<START>`` and
    ``<END>`` for ``sample`` (the loss works without them, as CS231n's published checks expect).
    """

    def __init__(
        self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128, cell_type="rnn", dtype=np.float32, seed=None
    ):
        if cell_type not in {"rnn", "lstm"}:
            raise ValueError(f'cell_type must be "rnn" or "lstm", got {cell_type!r}')
        if "<NULL>" not in word_to_idx:
            raise ValueError("word_to_idx has no '<NULL>' token (the padding word, index of masked targets)")
        self.cell_type = cell_type
        self.dtype = dtype
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self.params = {}
        V, D, W, H = len(word_to_idx), input_dim, wordvec_dim, hidden_dim
        self._null = word_to_idx["<NULL>"]
        self._start, self._end = word_to_idx.get("<START>"), word_to_idx.get("<END>")
        gates = 4 if cell_type == "lstm" else 1
        rng = np.random.default_rng(seed)
        self.params["W_embed"] = rng.standard_normal((V, W)) / 100
        self.params["W_proj"] = rng.standard_normal((D, H)) / np.sqrt(D)
        self.params["b_proj"] = np.zeros(H)
        self.params["Wx"] = rng.standard_normal((W, gates * H)) / np.sqrt(W)
        self.params["Wh"] = rng.standard_normal((H, gates * H)) / np.sqrt(H)
        self.params["b"] = np.zeros(gates * H)
        self.params["W_vocab"] = rng.standard_normal((H, V)) / np.sqrt(H)
        self.params["b_vocab"] = np.zeros(V)
        for k, v in self.params.items():
            self.params[k] = v.astype(self.dtype)

    def loss(self, features, captions):
        """Training loss and gradients for ``features (N, D)`` and ``captions (N, T)`` word indices.

        Inputs to the RNN are ``captions[:, :-1]`` (starting with ``<START>``), targets are
        ``captions[:, 1:]``; positions whose target is ``<NULL>`` are masked out of the loss.
        Returns (loss, grads) with grads keyed like ``self.params``.
        """
        if features.ndim != 2 or features.shape[1] != self.params["W_proj"].shape[0]:
            raise ValueError(f"features must be (N, {self.params['W_proj'].shape[0]}), got {features.shape}")
        if captions.ndim != 2 or captions.shape[0] != features.shape[0]:
            raise ValueError(f"captions must be (N, T) with N = {features.shape[0]}, got {captions.shape}")
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        p = self.params
        grads = {}
        # Forward: features -> h0 (affine), captions_in -> word vectors, the RNN or LSTM over them (per
        # self.cell_type), scores at every step, masked temporal softmax loss against captions_out. Then back
        # through the same layers in reverse order, filling grads with one entry per parameter.
        ### BEGIN SOLUTION
        h0, cache_proj = affine_forward(features, p["W_proj"], p["b_proj"])  # (N, H)
        x, cache_embed = word_embedding_forward(captions_in, p["W_embed"])  # (N, T, W)
        forward, backward = (rnn_forward, rnn_backward) if self.cell_type == "rnn" else (lstm_forward, lstm_backward)
        h, cache_rnn = forward(x, h0, p["Wx"], p["Wh"], p["b"])  # (N, T, H)
        scores, cache_vocab = temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])  # (N, T, V)
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, cache_vocab)
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = backward(dh, cache_rnn)
        grads["W_embed"] = word_embedding_backward(dx, cache_embed)
        _, grads["W_proj"], grads["b_proj"] = affine_backward(dh0, cache_proj)
        ### END SOLUTION
        return loss, grads

    def sample(self, features, max_length=30):
        """Greedy captions: start from ``<START>``, feed back the highest-scoring word at each step.

        Returns captions (N, max_length) of word indices; after a caption's ``<END>`` the rest is ``<NULL>``.
        """
        if self._start is None or self._end is None:
            raise ValueError("sample needs '<START>' and '<END>' in word_to_idx")
        N = features.shape[0]
        p = self.params
        captions = np.full((N, max_length), self._null, dtype=np.int64)
        # h0 from the features (and c0 = 0 for the LSTM); at each step embed the previous word (<START> first),
        # take one rnn_step_forward or lstm_step_forward, score the vocabulary and keep the best word. Write
        # a caption's words up to and including its <END>, leaving <NULL> after it.
        ### BEGIN SOLUTION
        h = features @ p["W_proj"] + p["b_proj"]  # (N, H)
        c = np.zeros_like(h)
        words = np.full(N, self._start)
        done = np.zeros(N, dtype=bool)
        for t in range(max_length):
            x = p["W_embed"][words]  # (N, W)
            if self.cell_type == "rnn":
                h, _ = rnn_step_forward(x, h, p["Wx"], p["Wh"], p["b"])
            else:
                h, c, _ = lstm_step_forward(x, h, c, p["Wx"], p["Wh"], p["b"])
            words = np.argmax(h @ p["W_vocab"] + p["b_vocab"], axis=1)
            captions[~done, t] = words[~done]
            done |= words == self._end
            if done.all():
                break
        ### END SOLUTION
        return captions
