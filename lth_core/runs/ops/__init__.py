"""Stacked layers: K same-shaped models' layers computed as one operation each (see `network`).

- `conv`: activations as one [N, K*C, H, W] tensor; a convolution is one grouped convolution.
- `batchnorm`: one batch-norm call over the K*C channels, updating the stacked running statistics.
- `linear`: activations as [K, N, F]; a linear layer is one batched matrix product (`baddbmm`).
- `network`: the three networks' forward passes written with these, and stacked evaluation.
"""
