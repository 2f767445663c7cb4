"""Collect face images of one person from a webcam, a video file or a folder of images.

    ppfr.capture.capture  capture_faces, crop_with_margin, next_number
    ppfr.capture.sources  VideoSource, ImageFolderSource, CaptureError
    ppfr.capture.window   Window, WindowError (the --show preview, shared with ppfr recognize)
"""
