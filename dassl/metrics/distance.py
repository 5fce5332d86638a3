"""Pairwise distances between two feature matrices, under upstream Dassl's names."""

import torch
from torch.nn import functional as F


def euclidean_squared_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """[M, D] x [N, D] -> [M, N] squared Euclidean distances, ||a||^2 + ||b||^2 - 2 a.b."""
    squared1 = input1.pow(2).sum(dim=1, keepdim=True)  # [M, 1]
    squared2 = input2.pow(2).sum(dim=1, keepdim=True).t()  # [1, N]
    return torch.addmm(squared1 + squared2, input1, input2.t(), beta=1, alpha=-2)


def cosine_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """[M, D] x [N, D] -> [M, N] cosine distances, 1 - cos."""
    return 1 - F.normalize(input1, dim=1) @ F.normalize(input2, dim=1).t()


DISTANCES = {"euclidean": euclidean_squared_distance, "cosine": cosine_distance}


def compute_distance_matrix(
    input1: torch.Tensor, input2: torch.Tensor, metric: str = "euclidean"
) -> torch.Tensor:
    """[M, D] x [N, D] -> [M, N] distances; ``metric`` is "euclidean" (squared) or "cosine"."""
    if input1.dim() != 2 or input2.dim() != 2 or input1.size(1) != input2.size(1):
        raise ValueError(
            f"Expected two 2-D feature matrices of one width, got {tuple(input1.shape)} and "
            f"{tuple(input2.shape)}"
        )
    if metric not in DISTANCES:
        raise ValueError(f'Unknown distance metric: {metric}. Choose "euclidean" or "cosine"')
    return DISTANCES[metric](input1, input2)
