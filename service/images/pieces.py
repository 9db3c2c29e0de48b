"""Keeping the digit: connected pieces of ink are labelled, and specks, far-away marks, ruled lines, desk strips
and boxes drawn around the digit are dropped.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from service.errors import BlankImage
from service.images.arrays import BoolArray, FloatArray, IntArray

# Ink connectivity is analysed on a grid at most this large.
COMPONENT_GRID_SIDE = 128
# Connected pieces of ink smaller than this fraction of the digit's main piece are specks.
SPECK_FRACTION = 0.04
# Pieces farther from the main piece than this fraction of its longer side are not part of the digit.
NEIGHBOUR_DISTANCE_FRACTION = 0.5
# Pieces that lie mostly within this fraction of the image's side from an edge are ruled lines or frames ...
EDGE_BAND_FRACTION = 0.08
EDGE_CLUTTER_SHARE = 0.8
# ... and so are pieces that run along at least this share of one side of the image (a desk around the paper).
BORDER_CONTACT_SHARE = 0.5
# The main piece must hold at least this fraction of the image's pixels (at the working size) to be a digit.
MINIMUM_DIGIT_SHARE = 0.0002


def digit_mask(ink_mask: BoolArray) -> tuple[BoolArray, float]:
    """The ink that belongs to the digit: the main connected piece and the sizeable pieces near it; and the share
    of the drawn ink it keeps.

    Connectivity is analysed on a coarse grid (a cell is inked if any of its pixels is), which also joins
    strokes broken by a pixel or two. The drawn ink is every piece but specks and the surroundings (edge clutter):
    far-away pieces and frames around the digit count, so a smiley whose face is dropped as a frame, or a word
    cut down to its biggest letter, keeps a small share (the "not a digit" check reads it).
    """
    cell = math.ceil(max(ink_mask.shape) / COMPONENT_GRID_SIDE)
    ink_per_cell = cell_sums(ink_mask, cell) if cell > 1 else ink_mask.astype(np.float32)
    labels, count, boxes = components_and_boxes(ink_per_cell > 0)
    areas = np.bincount(labels.ravel(), weights=ink_per_cell.ravel(), minlength=count + 1).astype(np.float64)
    edge_clutter = _edge_clutter(labels, areas, count)
    kept = _pieces_to_keep(areas, ink_mask.size, boxes, edge_clutter)
    share = _kept_share(areas, kept, edge_clutter)
    kept_cells = kept[labels]
    if cell == 1:
        return ink_mask & kept_cells, share
    kept_pixels = np.repeat(np.repeat(kept_cells, cell, axis=0), cell, axis=1)
    return ink_mask & kept_pixels[: ink_mask.shape[0], : ink_mask.shape[1]], share


def _kept_share(areas: npt.NDArray[np.float64], kept: BoolArray, edge_clutter: BoolArray) -> float:
    """The kept pieces' ink over the drawn ink: kept pieces plus every other piece that is neither edge clutter
    nor a speck beside the largest kept piece."""
    kept_area = float(areas[kept].sum())
    if kept_area == 0:
        return 1.0
    drawn = ~edge_clutter & (areas >= SPECK_FRACTION * areas[kept].max())
    drawn[0] = False
    return kept_area / float(areas[drawn | kept].sum())


def cell_sums(mask: BoolArray, cell: int) -> FloatArray:
    """The number of inked pixels in each `cell` x `cell` block (adding strided slices beats a 4-D sum)."""
    height, width = mask.shape
    rows, columns = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.zeros((rows * cell, columns * cell), dtype=np.float32)
    padded[:height, :width] = mask
    row_sums = sum((padded[offset::cell] for offset in range(1, cell)), start=padded[0::cell].copy())
    return sum((row_sums[:, offset::cell] for offset in range(1, cell)), start=row_sums[:, 0::cell].copy())


def components_and_boxes(mask: BoolArray) -> tuple[IntArray, int, IntArray]:
    """8-connected components, their count, and per label (0 included) its box: first row, first column, last
    row, last column."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    left, top, width, height = (stats[:, index].astype(np.int64) for index in range(4))
    boxes = np.stack([top, left, top + height - 1, left + width - 1], axis=1)
    return labels, count - 1, boxes


def _pieces_to_keep(
    areas: npt.NDArray[np.float64], image_pixels: int, boxes: IntArray, edge_clutter: BoolArray
) -> BoolArray:
    """Which components (by label) are the digit.

    Edge clutter (lines and frames along the border) and boxes drawn around the digit are dropped if anything
    else is large enough to be a digit; the largest remaining piece is the digit's main piece; other pieces stay
    if they are not specks (relative to the main piece) and lie near it.
    """
    clutter = edge_clutter | _enclosing_frames(boxes, areas)
    candidates = np.ones(len(areas), dtype=np.bool_)
    candidates[0] = False
    smallest_digit = max(2.0, MINIMUM_DIGIT_SHARE * image_pixels)
    if areas[~clutter & candidates].max(initial=0) >= smallest_digit:
        candidates &= ~clutter
    main = int(np.argmax(np.where(candidates, areas, -1)))
    if areas[main] < smallest_digit:
        raise BlankImage("no digit found: the only ink is a few isolated specks; send an image with a visible digit")
    gaps = _box_gaps(boxes, boxes[main])
    main_side = float(max(boxes[main, 2] - boxes[main, 0], boxes[main, 3] - boxes[main, 1]) + 1)
    near = gaps <= NEIGHBOUR_DISTANCE_FRACTION * main_side
    return candidates & (areas >= SPECK_FRACTION * areas[main]) & near


def _enclosing_frames(boxes: IntArray, areas: npt.NDArray[np.float64]) -> BoolArray:
    """Components whose bounding box strictly contains another one that is not a speck: a box drawn or printed
    around the digit. The pieces of a digit do not nest like that."""
    frames = np.zeros(len(boxes), dtype=np.bool_)
    for label in range(1, len(boxes)):
        inside = (
            (boxes[:, 0] > boxes[label, 0])
            & (boxes[:, 1] > boxes[label, 1])
            & (boxes[:, 2] < boxes[label, 2])
            & (boxes[:, 3] < boxes[label, 3])
            & (areas >= SPECK_FRACTION * areas[label])
        )
        inside[0] = False
        frames[label] = bool(inside.any())
    return frames


def _box_gaps(boxes: IntArray, reference: IntArray) -> IntArray:
    """The chessboard gap between each box and the reference box (0 when they overlap or touch)."""
    row_gap = np.maximum(0, np.maximum(boxes[:, 0] - reference[2], reference[0] - boxes[:, 2]) - 1)
    column_gap = np.maximum(0, np.maximum(boxes[:, 1] - reference[3], reference[1] - boxes[:, 3]) - 1)
    return np.maximum(row_gap, column_gap)


def _edge_clutter(labels: IntArray, areas: npt.NDArray[np.float64], count: int) -> BoolArray:
    """Components that belong to the surroundings rather than to the digit.

    Either they lie mostly in the band along the image's edges (ruled lines, printed frames), or they run along at
    least half of one side of the image (the desk around a sheet of paper, the paper's edge, a dark corner).
    """
    height, width = labels.shape
    band = max(1, round(EDGE_BAND_FRACTION * min(height, width)))
    in_band = np.ones_like(labels, dtype=np.bool_)
    in_band[band:-band, band:-band] = False
    cells_in_band = np.bincount(labels[in_band], minlength=count + 1)
    cells = np.bincount(labels.ravel(), minlength=count + 1)
    in_edge_band = cells_in_band >= EDGE_CLUTTER_SHARE * np.maximum(cells, 1)
    along_a_side = np.zeros(count + 1, dtype=np.bool_)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        along_a_side |= np.bincount(side, minlength=count + 1) >= BORDER_CONTACT_SHARE * side.size
    along_a_side[0] = False
    return in_edge_band | along_a_side
