"""Following faces from frame to frame, so that a live source embeds and names only what is new.

Embedding a face (dlib's landmarks and ResNet) costs an order of magnitude more than finding it on a
half-size frame, so a live source that embeds every face in every frame runs at the embedder's pace.
`Tracker` matches each frame's detections to the faces of the frames before by the overlap of their
boxes (greedy, highest intersection-over-union first). A face keeps the name it was given; it is embedded
and named again only when it is new, when its box has grown or shrunk by more than `resize` since it was
named, or when its name is `refresh` frames old. The boxes come from each frame's own detection, so they
follow the faces every frame; a name shown in frame f was computed in frame f - (refresh - 1) or later.
The price: when one person steps into exactly where another stood within a frame, the old name stays on
the new face for at most refresh - 1 frames.
"""
from __future__ import annotations

from dataclasses import dataclass

from ppfr.embed.detect import Box

UNNAMED = "…"   # shown for a face between its detection and its first name (never longer than one frame)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / float(a.area + b.area - inter)


@dataclass
class Track:
    """One face followed across frames, and what it was last named."""
    id: int
    box: Box
    name: str = UNNAMED
    known: bool = False
    probability: float | None = None   # the classifier's top probability, when a classifier named it
    distance: float | None = None      # the distance to the nearest gallery entry, when a gallery did
    named_at: int | None = None        # the frame whose embedding gave the name
    named_area: int = 0                # the box's area then
    missed: int = 0                    # frames since a detection last matched it

    def age(self, frame: int) -> int | None:
        """Frames since the name was computed (0: in this frame)."""
        return None if self.named_at is None else frame - self.named_at


class Tracker:
    """Greedy IoU matching of detections to tracks; which tracks need an embedding this frame.

        tracks = tracker.update(boxes)        # the faces of this frame, each with its track
        for t in tracker.due(tracks): ...     # embed and name these, then tracker.named(t, ...)
    """

    def __init__(self, refresh: int = 10, min_iou: float = 0.3, max_missed: int = 2, resize: float = 0.5):
        if refresh < 1:
            raise ValueError(f"refresh is a number of frames >= 1, got {refresh}")
        self.refresh = refresh
        self.min_iou = min_iou
        self.max_missed = max_missed     # a track survives this many frames without a detection
        self.resize = resize
        self.frame = -1
        self._tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box]) -> list[Track]:
        """Advance one frame: match `boxes` to tracks (new tracks for the rest) and return, in the order
        of `boxes`, the track of each. Tracks unmatched for more than max_missed frames are forgotten."""
        self.frame += 1
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self._tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        of_box: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used or bi in of_box:
                continue
            used.add(ti)
            of_box[bi] = self._tracks[ti]
        for ti, t in enumerate(self._tracks):
            t.missed = 0 if ti in used else t.missed + 1
        born = []
        for bi, box in enumerate(boxes):
            if bi in of_box:
                of_box[bi].box = box
            else:
                of_box[bi] = Track(self._next_id, box)
                self._next_id += 1
                born.append(of_box[bi])
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed] + born
        return [of_box[bi] for bi in range(len(boxes))]

    def due(self, tracks: list[Track]) -> list[Track]:
        """The tracks to embed and name in this frame: new, resized, or with a name refresh frames old."""
        def stale(t: Track) -> bool:
            if t.named_at is None or self.frame - t.named_at >= self.refresh:
                return True
            return abs(t.box.area - t.named_area) > self.resize * max(t.named_area, 1)
        return [t for t in tracks if stale(t)]

    def named(self, track: Track, name: str, known: bool, probability=None, distance=None) -> None:
        track.name, track.known, track.probability, track.distance = name, known, probability, distance
        track.named_at, track.named_area = self.frame, track.box.area

    def reset(self) -> None:
        self._tracks.clear()
        self.frame = -1
