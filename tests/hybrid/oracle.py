"""The single-genome training oracle: ``GenomeNet`` and ``torch.optim.AdamW``, step by step.

The package has one training loop (:func:`hybrid.population.train_engine`); this is
the plain-PyTorch reference the tests hold it to. Same loss (mean task loss +
``config.penalty`` * ``net.penalty()``), AdamW with decay on edge weights only, the
given minibatches and (hard-concrete) noise rows. No failure rule: oracles are run
on finite data.
"""

from __future__ import annotations

import torch

from hybrid.metrics import task_loss
from hybrid.net import GenomeNet
from hybrid.train import LOSS_WINDOW, TrainConfig


def optimizer(net: GenomeNet, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW decaying edge weights only (gate logits and biases undecayed).

    Only the parameters that need gradients: a frozen gene (grafted module) is never
    handed to the optimiser.
    """
    weights = [p for k, p in net.edges.items() if k.endswith("_weight") and p.requires_grad]
    ids = {id(p) for p in weights}
    others = [p for p in net.parameters() if id(p) not in ids and p.requires_grad]
    groups = [
        {"params": weights, "weight_decay": config.weight_decay},
        {"params": others, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([grp for grp in groups if grp["params"]], lr=config.lr)


def train_net(
    net: GenomeNet,
    X: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    batches: torch.Tensor,
    noise: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
) -> float:
    """Train ``net`` in place; return the mean task loss of the last ``LOSS_WINDOW`` steps.

    ``inputs``: what each step trains on instead of ``X[batches[t]]`` (noisy minibatches).

    Shape:
        X: (N, n_inputs); batches: (steps, B); noise: (steps, net.n_gates) or None;
        inputs: (steps, B, n_inputs) or None.
    """
    opt = optimizer(net, config)
    net.train()
    losses = []
    for t in range(batches.shape[0]):
        idx = batches[t]
        out = net(X[idx] if inputs is None else inputs[t], None if noise is None else noise[t])
        task = task_loss(out, y[idx], config.loss)
        loss = task + config.penalty * net.penalty() if config.penalty else task
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(task.detach()))
    net.eval()
    window = losses[-LOSS_WINDOW:]
    return sum(window) / len(window) if window else float("nan")


def engine_and_oracles(pop, X: torch.Tensor, y: torch.Tensor, config: TrainConfig, seed: int, gate: str = "sigmoid"):
    """Train ``pop`` in one engine and each member as a GenomeNet on the same minibatches.

    Returns:
        ``(engine, results, trained genomes, [(oracle loss, oracle genome) per member])``.
    """
    from hybrid.batches import minibatch_indices
    from hybrid.net import write_back
    from hybrid.population import PopulationEngine, train_engine

    batches = minibatch_indices(X.shape[0], config.batch_size, config.steps, torch.Generator().manual_seed(seed))
    engine = PopulationEngine(pop, gate)
    results = train_engine(engine, X, y, config, batches)
    oracles = []
    for genome in pop:
        net = GenomeNet(genome, gate)
        loss = train_net(net, X, y, config, batches)
        oracles.append((loss, write_back(genome, net)))
    return engine, results, engine.write_back(), oracles


def grads_as_genomes(engine, grads: tuple[torch.Tensor, ...]) -> list:
    """Write gradients back as if they were values (same layout): genomes holding ``grads``.

    ``engine``: a population or recurrent engine (``params``, ``write_back``).
    """
    saved = [p.detach().clone() for p in engine.params]
    for p, g in zip(engine.params, grads, strict=True):
        p.data.copy_(g)
    try:
        return engine.write_back()
    finally:
        for p, s in zip(engine.params, saved, strict=True):
            p.data.copy_(s)
