"""Per-layer mixed precision: give each linear a low width or 8 bits under an average bits-per-weight budget.

Each group of linears has a cost at each width, the storage of its quantized result (codes, scales, zero points,
corrections: `MixedWeight.bits_per_weight`), and a sensitivity at the low width: how far it moves the model's
output when it alone is quantized (`svdq_edge.calib.sensitivity`; 8-bit layers count as lossless, their error is two
orders of magnitude smaller). Sensitivities are assumed to add up over groups (docs/results.md: no single MiniLM
layer carries the loss), so the assignment minimises their sum under the budget: a 0/1 knapsack solved greedily,
upgrading the groups with the largest sensitivity removed per extra storage bit first.

Layers that a fused graph packs into one matmul (q/k/v, gate/up) are one group and get one width, so that they
stay packable.
"""

from __future__ import annotations

from svdq_edge.config import ConfigError

# Sibling linears that read the same input and are packed into one matmul by the fused graphs.
PACKED_SIBLINGS = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def packed_groups(names: list[str]) -> list[list[str]]:
    """`names` partitioned into groups that must share a width: packed siblings of one parent, the rest alone."""
    by_key: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    groups: list[list[str]] = []
    for name in names:
        parent, _, leaf = name.rpartition(".")
        family = next((f for f in PACKED_SIBLINGS if leaf in f), None)
        if family is None:
            groups.append([name])
            continue
        key = (parent, family)
        if key not in by_key:
            by_key[key] = []
            groups.append(by_key[key])
        by_key[key].append(name)
    return groups


def assign_bits(cost: dict[str, dict[int, float]], sensitivity: dict[tuple[str, ...], float], n_weights: int,
                budget: float, low: int, high: int = 8) -> dict[str, int]:
    """{layer: width}: every layer at `low`, then groups upgraded to `high` by sensitivity removed per extra storage
    bit while the mean storage bits per weight stays within `budget`.

    cost: layer -> {width: storage bits of the layer at that width}; sensitivity: group (a tuple of layer names, as
    `packed_groups` makes them) -> its sensitivity at `low`; n_weights: the layers' weight count. Raises ConfigError
    when every layer at `low` already exceeds the budget.
    """
    cap = budget * n_weights * (1 + 1e-9)
    spent = sum(c[low] for c in cost.values())
    if spent > cap:
        raise ConfigError(f"bits budget {budget:g} is below {spent / n_weights:.3f} bits/weight, the cost of every "
                          f"layer at {low} bits")
    ranked = []
    for group, s in sensitivity.items():
        extra = sum(cost[n][high] - cost[n][low] for n in group)
        ranked.append((-s / max(extra, 1e-9), group, extra))
    assignment = dict.fromkeys(cost, low)
    for _, group, extra in sorted(ranked):
        if spent + extra <= cap:
            spent += extra
            assignment.update(dict.fromkeys(group, high))
    return assignment
