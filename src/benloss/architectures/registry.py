"""The one home of the architectures a study can train: ids, names, timm's model behind each, what explains it.

It needs neither PyTorch nor NumPy (the workflow and the report read it); ``benloss.architectures.build`` builds
the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benloss.errors import InputError


@dataclass(frozen=True)
class Architecture:
    """One architecture: its id (the config's and the results tree's) and its name in tables; for a timm backbone,
    timm's model name, the keywords it is created with and its input layer (``stem``), which reads the stacked
    bands. ``not_explained`` says why LRP leaves it out (None: explained like the K-Branch CNN)."""

    id: str
    name: str
    timm_name: str | None = None
    timm_kwargs: dict = field(default_factory=dict)
    stem: str | None = None
    not_explained: str | None = None

    @property
    def explained(self) -> bool:
        return self.not_explained is None

    @property
    def input_layers(self) -> dict[str, tuple[str, ...]]:
        """The layers an explanation's input rule applies to, each with the band groups it reads, in channel
        order: the K-Branch CNN's three branch inputs, or a timm backbone's stem on all three groups."""
        from benloss.facts.bands import BAND_GROUPS

        if self.stem is None:
            return {f"branch_{g.name}.conv1": (g.name,) for g in BAND_GROUPS}
        return {self.stem: tuple(g.name for g in BAND_GROUPS)}


VIT_NOT_EXPLAINED = (
    "a vision transformer has no sound LRP composite in zennit: attention multiplies two functions of the input and "
    "LayerNorm divides by one, and zennit's rules cover neither, so its relevance would not be conserved"
)

_ARCHITECTURES = (
    Architecture("kbranch", "K-Branch CNN"),
    Architecture("resnet18", "ResNet-18", "resnet18", stem="backbone.conv1"),
    Architecture("resnet50", "ResNet-50", "resnet50", stem="backbone.conv1"),
    Architecture("vit_small", "ViT-S/8", "vit_small_patch8_224", {"img_size": 120}, stem="backbone.patch_embed.proj",
                 not_explained=VIT_NOT_EXPLAINED),
)  # fmt: skip
ARCHITECTURES: dict[str, Architecture] = {a.id: a for a in _ARCHITECTURES}
ARCHITECTURE_IDS: tuple[str, ...] = tuple(ARCHITECTURES)
#: The paper's architecture.
DEFAULT_ARCHITECTURE = "kbranch"


def architecture(architecture_id: str) -> Architecture:
    """The registry's entry, or an error naming the choices."""
    try:
        return ARCHITECTURES[architecture_id]
    except KeyError:
        raise InputError(
            f"unknown architecture {architecture_id!r}; choose from {', '.join(ARCHITECTURE_IDS)}"
        ) from None
