"""`ppfr recognize`: name the faces in images, a video or a webcam with the softmax model held as two shares."""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import click

from ppfr.config import section
from ppfr.embed.detect import DETECTORS
from ppfr.failures import command
from ppfr.models.reference import CONFIDENCE_BANDS, REVEALS
from ppfr.net.options import parties_option

from .recognizer import DEFAULT_REVEAL, DEFAULT_THRESHOLD

_cfg = section("recognize")
_THRESHOLD = float(_cfg.get("threshold", DEFAULT_THRESHOLD))
_WEBCAM_SCALE = float(_cfg.get("webcam_detect_scale", 0.5))
_REVEAL = str(_cfg.get("reveal", DEFAULT_REVEAL))
_BANDS = tuple(_cfg.get("confidence_bands", CONFIDENCE_BANDS))
_REFRESH = int(_cfg.get("refresh", 10))

_EPILOG = """
\b
Output, one line per face (no line for an image or frame without a face):
  CSV (default)   SOURCE,NAME,PROBABILITY,TOP,RIGHT,BOTTOM,LEFT
                  SOURCE is the image file, or the frame number (from 0) of a video or webcam;
                  the box is in pixels of the full image, in face_recognition's order.
  --json          {"source", "frame", "name", "probability", "known", "box": {top, right, bottom, left}}
A summary (faces, per-face time of detection, embedding and MPC, bytes per MPC batch) goes to stderr.

\b
Examples:
  ppfr recognize photos/ group.jpg
  ppfr recognize --video talk.mp4 --output annotated/ --json
  ppfr recognize --webcam --camera 0 --show
"""


@command(epilog=_EPILOG)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recognise every frame of this video file.")
@click.option("--webcam", is_flag=True, help="Recognise the live picture of a webcam (Ctrl-C, or q in --show, stops).")
@click.option("--camera", type=click.IntRange(0), default=None,
              help="Webcam index for --webcam (0 is the first camera; implies --webcam).  [default: 0]")
@click.option("-m", "--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=section("paths").get("weights", "weights"), show_default=True,
              help="Model written by `ppfr train-mpc -o`: MODEL/server0/, MODEL/server1/ (each server's shares) "
                   "and MODEL/client/ (the client's record with the class names).")
@click.option("-t", "--threshold", type=click.FloatRange(0, 1), default=_THRESHOLD, show_default=True,
              help="A face gets the top class's name when that class's probability is at least this, "
                   "otherwise 'unknown'. Higher: fewer strangers accepted, more known faces rejected "
                   "(benchmarks/open_set.py measures both).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of CSV.")
@click.option("--show", is_flag=True, help="Show each image or frame with boxes and labels (q or Esc quits; "
              "with images, any other key goes to the next). Needs a display and a GUI build of OpenCV.")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write annotated copies here: OUTPUT/NAME.jpg for images, OUTPUT/NAME.avi for a video, "
                   "OUTPUT/webcam-N-TIME.avi for a webcam. Each file appears only when complete.")
@click.option("--detector", type=click.Choice(DETECTORS), default=_cfg.get("detector", "hog"),
              show_default=True, help="dlib's HOG face detector, or its CNN (MMOD) one (far slower on a CPU).")
@click.option("--upsample", type=click.IntRange(0, 3), default=int(_cfg.get("upsample", 0)), show_default=True,
              help="Upsample this many times before detecting (finds smaller faces; slower). On images a "
                   "second look at one more upsampling is taken when nothing is found.")
@click.option("--detect-scale", type=click.FloatRange(0, 4, min_open=True), default=None,
              help="Detect faces on a copy of each frame resized by this factor (boxes are mapped back and "
                   f"faces embedded at full size).  [default: {_WEBCAM_SCALE:g} for --webcam, 1 otherwise]")
@click.option("--reveal", type=click.Choice(REVEALS), default=_REVEAL, show_default=True,
              help="What the servers reveal to the client. label: each face's top class (or unknown, below "
                   "--threshold) and a confidence band, both computed on shares, nothing more. "
                   "probabilities: every class's probability (the softmax on shares). logits: the logits "
                   "behind a random offset per face, i.e. their differences (fewest rounds). The last two "
                   "let a client who chooses its queries rebuild the model from about one query per class "
                   "(README, 'what each party learns').")
@click.option("--track/--no-track", default=None,
              help="Follow faces from frame to frame and embed and name only new faces, and each tracked face "
                   "again every --refresh frames (boxes still follow every frame); --no-track embeds every face "
                   "of every frame.  [default: --track for --webcam (recognize.track), --no-track for a --video, "
                   "where every frame counts more than the pace]")
@click.option("--refresh", type=click.IntRange(1), default=_REFRESH, show_default=True,
              help="With --track: frames between two namings of a tracked face, so a name shown is at most "
                   "REFRESH - 1 frames old.")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after this many video/webcam frames.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary on stderr.")
@parties_option
def recognize(paths, video, webcam, camera, model_dir, threshold, as_json, show, output_dir, detector, upsample,
              detect_scale, reveal, track, refresh, max_frames, quiet):
    """Name the faces in image files or folders (PATHS), a --video, or a --webcam.

    The client detects each face (dlib), embeds it (dlib ResNet, 128-d), and splits the embeddings of all
    faces of an image or frame into two additive secret shares, one per server: one MPC batch per frame.
    The servers compute the classifier on the shares, with the model they hold as shares (MODEL/server0/,
    MODEL/server1/), and only the client learns the answer (see --reveal). The top class names the face
    if its probability is at least --threshold; otherwise the face is 'unknown'.
    """
    from ppfr.embed.detect import FaceDetector

    webcam = webcam or camera is not None
    if webcam and camera is None:
        camera = 0
    if sum([bool(paths), video is not None, webcam]) != 1:
        raise click.UsageError("give exactly one source: image files or folders, --video FILE, or --webcam")
    if detect_scale is None:
        detect_scale = _WEBCAM_SCALE if webcam else 1.0
    if track is None:
        track = webcam and bool(_cfg.get("track", True))
    printer = _Printer(as_json)
    # images are few and precious: look again, upsampled, when nothing is found; frames are many
    retry = upsample + 1 if paths else None
    run = _Run(model_dir, threshold, FaceDetector(detector, upsample, retry), printer, show, output_dir,
               detect_scale, max_frames, progress=not quiet, reveal=reveal,
               refresh=refresh if track else None)
    if paths:
        run.images(paths)
    else:
        run.video(video, camera if webcam else None)
    if not quiet:
        click.echo(run.summary_text(), err=True)
    if run.failed:
        raise SystemExit(1)


class _Printer:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.known = 0

    def face(self, source: str, frame, face) -> None:
        self.known += face.known
        if self.as_json:
            line = json.dumps({"source": source, "frame": frame, **face.as_dict()})
        else:
            b = face.box
            buf = io.StringIO()
            csv.writer(buf, lineterminator="").writerow(
                [source if frame is None else frame, face.name, f"{face.probability:.4f}", b.top, b.right, b.bottom,
                 b.left])
            line = buf.getvalue()
        click.echo(line)


class _Run:
    """One recognize run: the recogniser, the optional window and writers, and what went wrong."""

    def __init__(self, model_dir, threshold, detector, printer, show, output_dir, detect_scale, max_frames,
                 progress, reveal=DEFAULT_REVEAL, refresh=None):
        from .media import open_window

        self.window = open_window(lambda m: click.echo(m, err=True)) if show else None   # before any work
        self.output_dir = output_dir
        self.printer = printer
        self.detect_scale = detect_scale
        self.max_frames = max_frames
        self.progress = progress
        self.failed: list[str] = []
        self.dropped = 0
        self.live = False
        self.is_video = False
        self.written = None
        self._last_write = None
        self.started = time.perf_counter()
        self.recognizer = None
        self.model_dir = model_dir
        self.threshold = threshold
        self.detector = detector
        self.reveal = reveal
        self.refresh = refresh         # frames between namings of a tracked face; None: no tracking
        self.pipeline = None

    def _open_model(self):
        from .recognizer import Recognizer

        self.recognizer = Recognizer(self.model_dir, self.threshold, self.detector, reveal=self.reveal, bands=_BANDS)
        self.started = time.perf_counter()

    def images(self, paths):
        from tqdm import tqdm

        from ppfr.embed.detect import SkipImage, read_rgb

        from .media import ImageOutput, annotate, list_images

        files = list_images(paths)
        self._open_model()
        out = ImageOutput(self.output_dir) if self.output_dir else None
        try:
            for path in tqdm(files, desc="recognising", unit="img", disable=not self.progress or len(files) < 2):
                try:
                    rgb = read_rgb(path)
                    faces = self.recognizer.recognize(rgb, self.detect_scale)
                except SkipImage as e:   # unreadable, or too large (limits: in the config)
                    self.failed.append(str(path))
                    click.echo(f"{path}: {e.detail or e.reason}", err=True)
                    continue
                for f in faces:
                    self.printer.face(str(path), None, f)
                if out or self.window:
                    bgr = annotate(rgb[:, :, ::-1], faces)
                    if out:
                        out.write(path, bgr)
                    if self.window and not self.window.show(bgr, wait_ms=0):
                        break
        finally:
            self._close()

    def video(self, path, camera):
        import numpy as np
        from tqdm import tqdm

        from .media import LatestFrame, MediaError, annotate, open_video

        try:
            source, fps = open_video(path, camera)
        except MediaError as e:
            if camera is None:
                raise
            raise MediaError(f"{e} (try another --camera, or give --video FILE or image files)") from None
        try:
            writer = self._video_writer(path, camera, fps)
            self._open_model()
            if self.refresh:
                self.pipeline = _tracked(self.recognizer, self.detect_scale, self.refresh)
        except BaseException:
            source.cap.release()     # let go of the camera at once, not when the object is collected
            raise
        live = LatestFrame(source) if path is None else None
        self.live, self.is_video = live is not None, True
        frames = live if live is not None else source
        total = source.length if path is not None else None
        if self.max_frames and total:
            total = min(total, self.max_frames)
        bar = tqdm(total=total, desc="recognising", unit="frame", disable=not self.progress)
        ok = False
        try:
            for index, bgr in enumerate(frames):
                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                if self.pipeline is not None:
                    faces, _ = self.pipeline.process(rgb)
                else:
                    faces = self.recognizer.recognize(rgb, self.detect_scale)
                for f in faces:
                    self.printer.face(str(path) if path is not None else f"camera {camera}", index, f)
                sys.stdout.flush()   # a live source: each frame's lines as soon as they exist
                bar.update()
                if writer or self.window:
                    view = annotate(bgr, faces)
                    if writer:
                        writer.write(view, self._repeats(writer.fps) if live is not None else 1)
                    if self.window and not self.window.show(view, wait_ms=1):
                        break
                if self.max_frames and index + 1 >= self.max_frames:
                    break
            ok = True
        except KeyboardInterrupt:
            ok = True    # the usual way to end a webcam session: keep what was recorded
        finally:
            bar.close()
            if live is not None:
                live.stop()
                self.dropped = live.dropped
            if writer:
                writer.close(ok)
                self.written = writer.path if ok and writer.frames else None
            self._close()

    def _video_writer(self, path, camera, fps):
        """The writer of the annotated video (None without --output): OUTPUT/NAME.avi for a video file,
        OUTPUT/webcam-N-TIME.avi for a webcam."""
        from .media import MediaError, VideoOutput

        if not self.output_dir:
            return None
        if path is None:
            return VideoOutput(Path(self.output_dir) / f"webcam-{camera}-{time.strftime('%Y%m%d-%H%M%S')}.avi", fps)
        target = Path(self.output_dir) / f"{path.stem}.avi"
        if target.resolve() == path.resolve():
            raise MediaError(f"the annotated video would overwrite the input {path}; choose another --output")
        return VideoOutput(target, fps)

    def _repeats(self, fps: float) -> int:
        """How many video frames the frame just recognised from a live source stands for."""
        now = time.perf_counter()
        last, self._last_write = self._last_write, now
        return 1 if last is None else max(1, round((now - last) * fps))

    def _close(self):
        self.elapsed = time.perf_counter() - self.started
        if self.window:
            self.window.close()
        if self.recognizer:
            self.recognizer.close()

    def summary_text(self) -> str:
        if self.recognizer is None:
            return ""
        t = self.pipeline.timings if self.pipeline is not None else self.recognizer.timings
        d = t.as_dict()
        ms, per = d["ms_per_face"], d["per_batch"]
        head = (f"{t.faces} face(s), {self.printer.known} named, in {t.frames} "
                f"{'frame(s)' if self.live else 'image(s)'}, {self.elapsed:.1f} s")
        if self.live:
            head += f" ({t.frames / max(self.elapsed, 1e-9):.1f} frames/s; {self.dropped} camera frames skipped)"
        lines = [head]
        if self.pipeline is not None and t.faces:
            lines.append(f"tracking: {t.embedded} of {t.faces} faces embedded and named (each tracked face again "
                         f"every {self.refresh} frames)")
        if t.faces:
            lines.append(f"per face: detect {ms['detect']:.1f} ms, embed {ms['embed']:.1f} ms, "
                         f"MPC {ms['mpc']:.1f} ms (share + classify on shares + reconstruct)")
            lines.append(f"per MPC batch ({t.batches}, one per {'frame' if self.live or self.is_video else 'image'} "
                         f"with faces): {per['bytes_per_server'] / 1e3:,.0f} kB and {per['rounds']} rounds per "
                         f"server, {per['offline_bytes_per_server'] / 1e3:,.0f} kB from the dealer")
        if self.written:
            lines.append(f"annotated video: {self.written}")
        if self.failed:
            lines.append(f"{len(self.failed)} input(s) could not be read: {', '.join(self.failed[:5])}")
        return "\n".join(lines)


def _tracked(recognizer, detect_scale: float, refresh: int):
    """The live path with tracking around a loaded recogniser (ppfr.recognition.live)."""
    from .live import ClassifierNamer, LivePipeline
    from .tracking import Tracker

    return LivePipeline(ClassifierNamer(recognizer), recognizer.detector, recognizer.embedder, detect_scale,
                        Tracker(refresh))
