"""What determines one training run, standard library only (the workflow reads it to pass a run's settings)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields


@dataclass
class TrainConfig:
    """Everything that determines a training run (hashed into its checkpoint)."""

    loss: str
    seed: int = 0
    architecture: str = "kbranch"
    width: int = 1024
    epochs: int = 80
    batch_size: int = 256
    optimizer: str = "rmsprop"
    lr: float = 1e-4
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1e-7
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: int = 0
    loss_params: dict = field(default_factory=dict)
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    threads: int = 1
    workers: int = 0
    data_on_device: bool = False
    snapshots: int = 0

    def __post_init__(self) -> None:
        # JSON and YAML give 0 for 0.0: the same setting must give the same fingerprint and checkpoint.
        self.lr, self.weight_decay = float(self.lr), float(self.weight_decay)

    def fingerprint(self) -> str:
        """Hash of the settings that change results (not device, parallelism or memory layout)."""
        keys = ("loss", "seed", "width", "epochs", "batch_size", "lr", "rmsprop_alpha", "rmsprop_eps",
                "weight_decay", "loss_params", "amp")  # fmt: skip
        relevant = {k: getattr(self, k) for k in keys}
        # Settings added later count only where they differ from the paper's, so earlier checkpoints still resume.
        relevant |= {k: getattr(self, k) for k, paper in LATER_SETTINGS.items() if getattr(self, k) != paper}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_sections(
        cls, training: dict, model: dict, loss: str, seed: int, loss_params: dict, architecture: str = "kbranch"
    ) -> TrainConfig:
        """The run of ``loss``, ``seed`` and ``architecture`` under the config's ``training`` and ``model`` sections,
        whole: keys that are not settings of a run (the losses and seeds of the study, scheduling) are the
        workflow's. The architecture's recipe (``model.recipes.<architecture>``), where given, overrides the
        training section's settings for every loss alike."""
        recipe = (model.get("recipes") or {}).get(architecture, {})
        settings = {key: value for key, value in (training | recipe).items() if key in RUN_SETTINGS}
        if "width" in model:  # the K-Branch CNN's; a timm backbone has its own and keeps the default
            settings["width"] = model["width"]
        return cls(loss=loss, seed=seed, architecture=architecture, loss_params=loss_params, **settings)


#: Settings added after the first studies, with the paper's values (the fingerprint leaves them out at these).
LATER_SETTINGS = {"architecture": "kbranch", "optimizer": "rmsprop", "schedule": "constant", "warmup_epochs": 0}
#: The keys of the config's ``training`` section that are settings of one run (fields of ``TrainConfig``).
RUN_SETTINGS: tuple[str, ...] = tuple(
    f.name
    for f in fields(TrainConfig)
    if f.name not in ("loss", "seed", "architecture", "width", "loss_params", "snapshots")
)
