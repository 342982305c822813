"""An LRP rule for fully connected layers that conserves relevance and still counts the bias.

LRP-ε hands input i of neuron j the share x_i w_ij / z_j of the neuron's relevance R_j, where z_j = Σ_i x_i w_ij + b_j:
the bias's share b_j / z_j is lost (or, negative, injected), so after BatchNorm is merged into the layers the
input relevance no longer sums to the explained score. Leaving the bias out instead (z_j = Σ_i x_i w_ij) conserves
relevance but divides by a sum that the merged BatchNorm shift would have cancelled: small or of the other sign,
it inflates or flips the relevance, and on the demo the maps lose their hold on the class regions (relevance mass
at the region's share). ``EpsilonSpreadBias`` keeps LRP-ε's shares and hands the bias's share to the inputs too,
in proportion to how much each takes part in the sum, |x_i w_ij|:

    R_i = Σ_j [x_i w_ij / z_j + (b_j / z_j) |x_i w_ij| / Σ_k |x_k w_kj|] R_j,

which sums to Σ_j R_j exactly, up to the stabiliser ε, wherever some input of the neuron takes part
(Σ_k |x_k w_kj| > 0; a neuron whose inputs are all zero passes nothing on). Where all of a neuron's contributions
x_i w_ij share one sign it equals leaving the bias out (x_i w_ij / Σ_k x_k w_kj); with mixed signs, a bias larger
than their sum and of the other sign can turn an input's relevance to the other sign.
"""

from __future__ import annotations

import torch
from zennit.core import BasicHook, ParamMod, Stabilizer
from zennit.rules import NoMod


class EpsilonSpreadBias(BasicHook):
    """LRP-ε with the bias's share of each neuron's relevance spread over its inputs by |x_i w_ij|."""

    def __init__(self, epsilon: float = 1e-6) -> None:
        stabilise = Stabilizer.ensure(epsilon)

        def gradient_mapper(relevance, outputs):
            full, unbiased, magnitude = outputs
            share = relevance / stabilise(full)  # R_j / z_j
            return share, torch.zeros_like(relevance), share * (full - unbiased) / stabilise(magnitude)

        magnitudes = ParamMod(lambda param, _: param.abs(), zero_params=["bias"])
        super().__init__(
            input_modifiers=[lambda x: x, lambda x: x, torch.abs],
            param_modifiers=[NoMod(), NoMod(zero_params=["bias"]), magnitudes],
            output_modifiers=[lambda output: output] * 3,
            gradient_mapper=gradient_mapper,
            reducer=lambda inputs, gradients: inputs[0] * gradients[0] + inputs[2] * gradients[2],
        )
