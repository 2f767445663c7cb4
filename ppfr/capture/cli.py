"""`ppfr capture`: collect face images of one person into DATASET_DIR/NAME/."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ppfr.config import section
from ppfr.embed.detect import DETECTORS
from ppfr.failures import command

_cfg = section("capture")


@command()
@click.argument("name")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder; images go to OUT/NAME/NNNN.jpg, numbered on from any already there.")
@click.option("--camera", type=int, default=None, help="Webcam index (0 is the first camera).")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read frames from a video file instead.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Read frames from a folder of images instead.")
@click.option("--count", type=click.IntRange(1), default=_cfg.get("count", 20), show_default=True,
              help="Number of face images to save.")
@click.option("--every", type=click.IntRange(1), default=None,
              help="Frames from one save to the next (video frames are near-duplicates).  "
                   f"[default: {_cfg.get('every', 5)} for --camera/--video, 1 for --images]")
@click.option("--margin", type=click.FloatRange(0, 2), default=_cfg.get("margin", 0.5), show_default=True,
              help="Crop margin on each side, as a fraction of the face box (the embedder needs context).")
@click.option("--detector", type=click.Choice(DETECTORS), default=_cfg.get("detector", "hog"),
              show_default=True, help="dlib's HOG face detector, or its slower CNN (MMOD) detector.")
@click.option("--upsample", type=click.IntRange(0, 3), default=_cfg.get("upsample", 0), show_default=True,
              help="Upsample frames this many times before detecting (finds faces far from the camera; slower).")
@click.option("--show", is_flag=True,
              help="Preview window with the face box (q or Esc stops); needs a display. Headless without it.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def capture(name, out_dir, camera, video, images_dir, count, every, margin, detector, upsample, show,
            as_json, quiet):
    """Collect face images of person NAME from a webcam, a video file or a folder of images.

    Frames that hold exactly one face (dlib's frontal face detector) are cropped with a margin
    and saved as OUT/NAME/0001.jpg, 0002.jpg, ... until --count images are saved or the source
    ends. Frames with no face or with several faces are passed over.

    Examples:

      ppfr capture Ada --out dataset --camera 0 --count 30 --show

      ppfr capture Ada --out dataset --video ada.mp4 --every 10

      ppfr capture Ada --out dataset --images ~/photos/ada
    """
    from ppfr.embed.detect import FaceDetector

    from .capture import capture_faces
    from .sources import CaptureError, ImageFolderSource, VideoSource

    given = [x is not None for x in (camera, video, images_dir)]
    if sum(given) != 1:
        raise click.UsageError("give exactly one source: --camera N, --video FILE or --images DIR")
    if every is None:
        every = 1 if images_dir is not None else _cfg.get("every", 5)
    if images_dir is not None:
        source = ImageFolderSource(images_dir)
    elif video is not None:
        source = VideoSource(video=video)
    else:
        try:
            source = VideoSource(camera=camera)
        except CaptureError as e:
            raise CaptureError(f"{e} (try another --camera, or --video/--images)") from None
    result = capture_faces(source, out_dir, name, count=count, every=every,
                           detector=FaceDetector(detector, upsample, None), margin=margin,
                           show=show, progress=not quiet)

    summary = result.summary()
    summary["source"] = source.description
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"saved {len(result.saved)} of {count} images to {result.person_dir} "
                   f"({result.frames_read} frames read, {result.no_face} without a face, "
                   f"{result.several_faces} with several)")
        if result.unreadable:
            click.echo(f"could not decode {len(result.unreadable)} files: {', '.join(result.unreadable[:5])}")
    if not result.saved and not result.stopped_early:
        raise click.ClickException(f"no frame of {source.description} held exactly one face; nothing saved")
