"""Training batches from the encoded arrays: one gather per batch, no per-image Python work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from benloss.data.encoded import open_encoded


class EncodedSplit(Dataset):
    """A split of the encoded arrays; item ``i`` is the whole batch ``i`` of a fixed batch plan.

    ``plan`` is a list of index arrays; gathering a sorted index array from the memory map is one
    NumPy call per group and batch.
    """

    def __init__(self, folder: Path, split: str) -> None:
        self.folder = Path(folder)
        self.split = split
        self.arrays = open_encoded(self.folder, split)
        self.plan: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.plan)

    @property
    def n_images(self) -> int:
        return len(self.arrays["labels"])

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.arrays["labels"])

    def gather(self, indices: np.ndarray) -> dict[str, Tensor]:
        """Raw uint16 bands and uint8 labels of the given images, in the given order (one fancy index per array;
        batch plans hand sorted indices, which reads the memory map front to back)."""
        return {part: torch.from_numpy(self.arrays[part][indices]) for part in self.arrays}

    def __getitem__(self, item: int) -> dict[str, Tensor]:
        return self.gather(self.plan[item])


def batch_plan(n_images: int, batch_size: int, shuffle: bool, seed: int, epoch: int) -> list[np.ndarray]:
    """Index arrays of every batch of an epoch; the order depends only on (seed, epoch).

    A shuffled (training) plan drops the last incomplete batch, as BatchNorm cannot train on a batch of
    one and reshuffling lets every image take part over the epochs; an evaluation plan keeps every image.
    """
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n_images)
        stop = n_images - n_images % batch_size if n_images >= batch_size else n_images
    else:
        order = np.arange(n_images)
        stop = n_images
    # Sorted within a batch: the batch is the same set of images, and sorted reads are sequential.
    return [np.sort(order[start : min(start + batch_size, stop)]) for start in range(0, stop, batch_size)]


def loader(split: EncodedSplit, plan: list[np.ndarray], workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over whole batches (``batch_size=None``): workers gather, the trainer computes."""
    split.plan = plan
    return DataLoader(
        split,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        # A generator of its own: the loader's per-epoch seed draw must not consume the global RNG, or
        # the dropout masks would depend on how batches are loaded (workers, device-resident data).
        generator=torch.Generator().manual_seed(0),
    )


#: Accelerator memory kept free for the model, its activations and the optimiser when the data moves in.
RESERVE_BYTES, RESERVE_FRACTION = 4 * 2**30, 0.15


def split_bytes(split: EncodedSplit) -> int:
    """Bytes one split takes when held as is (uint16 bands, uint8 labels)."""
    return sum(array.nbytes for array in split.arrays.values())


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` of data fit on ``device`` next to training (always true off CUDA: host memory)."""
    if device.type != "cuda":
        return True
    free, total = torch.cuda.mem_get_info(device)
    return nbytes <= free - max(RESERVE_BYTES, RESERVE_FRACTION * total)


def copy_in_chunks(array: np.ndarray, device: torch.device, rows: int = 2048) -> Tensor:
    """A memory-mapped array on ``device``, copied ``rows`` at a time: host memory stays at one chunk
    (the real training split's 10 m bands alone are 29 GiB)."""
    tensor = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, device=device)
    for start in range(0, len(array), rows):
        tensor[start : start + rows].copy_(torch.from_numpy(np.array(array[start : start + rows])))
    return tensor


class DeviceResidentSplit:
    """The same split held on the accelerator as uint16, gathered there per batch (no host copies)."""

    def __init__(self, split: EncodedSplit, device: torch.device) -> None:
        self.tensors = {part: copy_in_chunks(array, device) for part, array in split.arrays.items()}
        self.device = device

    def batches(self, plan: list[np.ndarray]) -> Iterator[dict[str, Tensor]]:
        for indices in plan:
            index = torch.from_numpy(indices).to(self.device, non_blocking=True)
            yield {part: tensor.index_select(0, index) for part, tensor in self.tensors.items()}


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Move a batch's tensors to ``device`` (asynchronously from pinned memory)."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
